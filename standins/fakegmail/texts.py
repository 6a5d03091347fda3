"""What Gmail says, verbatim (GMAIL_IMAP.md; docs/gmail-facts.md for the ID answer, IMAP turned
off, and what Gmail refuses to parse in a SEARCH, each with its public source): greetings,
capabilities, completions, failures.

Completions are written without the tag; the session puts `<tag> ` in front. Texts Gmail is not
known to use for a case are marked as the fake's own choice.
"""

from __future__ import annotations

import base64

CAPABILITIES_BEFORE_AUTH = (
    b"IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 XYZZY SASL-IR "
    b"AUTH=XOAUTH2 AUTH=PLAIN AUTH=PLAIN-CLIENTTOKEN AUTH=OAUTHBEARER AUTH=XOAUTH"
)
CAPABILITIES_AFTER_AUTH = (
    b"IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 UIDPLUS "
    b"COMPRESS=DEFLATE ENABLE MOVE CONDSTORE ESEARCH UTF8=ACCEPT LIST-EXTENDED LIST-STATUS "
    b"LITERAL- SPECIAL-USE APPENDLIMIT=35651584"
)

XOAUTH2_CHALLENGE = base64.b64encode(
    b'{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}'
)
CONTINUE_LITERAL = b"+ go ahead"
ID_RESPONSE = (  # the client's address
    b'* ID ("name" "GImap" "vendor" "Google, Inc." "support-url" "https://support.google.com/mail" '
    b'"version" "gmail_imap_200428.12_p0" "remote-host" "%s")'
)
NAMESPACE_RESPONSE = b'* NAMESPACE (("" "/")) NIL NIL'

SUCCESS = b"OK Success"
CAPABILITY_DONE = b"OK Thats all she wrote! %s"  # session id
AUTHENTICATED = b"OK %s authenticated (Success)"  # email
LOGOUT_BYE = b"* BYE LOGOUT Requested"
LOGOUT_DONE = b"OK 73 good day (Success)"
SEARCH_DONE = b"OK SEARCH completed (Success)"
SELECTED = b"OK [%s] %s selected. (Success)"  # READ-ONLY or READ-WRITE, folder name
UNSELECTED = b"OK Returned to authenticated state. (Success)"  # the fake's own choice
THROTTLED_SUFFIX = b" [THROTTLED]"

BAD_SYNTAX = b"BAD Could not parse command"
BAD_STATE = b"BAD Command received in Invalid state."  # the fake's own choice
BAD_TAG = b"* BAD invalid tag %s"  # session id
NO_MAILBOX = b"NO [NONEXISTENT] Unknown Mailbox: %s (Failure)"  # folder name

AUTH_FAILED = b"NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)"
LOGIN_OVERQUOTA = b"NO [ALERT] Account exceeded command or bandwidth limits. (Failure)"
TOO_MANY_CONNECTIONS = b"NO [ALERT] Too many simultaneous connections. (Failure)"
WEB_LOGIN_ALERT = b"* NO [WEBALERT %s] Web login required."  # url
WEB_LOGIN_REFUSED = b"NO [ALERT] Please log in via your web browser: %s (Failure)"  # url
LOOKUP_FAILED = b"NO Lookup failed %s"  # session id
IMAP_DISABLED = (  # the user turned IMAP off in Gmail settings
    b"NO [ALERT] Your account is not enabled for IMAP use. Please visit your Gmail settings page "
    b"and enable your account for IMAP access. (Failure)"
)
IMAP_DISABLED_DOMAIN = (  # a Workspace administrator turned IMAP off; the 2nd sentence varies
    b"NO [ALERT] IMAP access is disabled for your domain. Please contact your domain "
    b"administrator for questions about this feature. (Failure)"
)
PARTIAL_FETCH = b"NO Some messages could not be FETCHed (Failure)"
SYSTEM_ERROR = b"NO System Error (Failure)"

BYE_OVERQUOTA = b"* BYE [OVERQUOTA] Account exceeded command or bandwidth limits."
BYE_SYSTEM_ERROR = b"* BYE System Error"
BYE_SESSION_EXPIRED = b"* BYE Session expired, please login again."

DEFAULT_WEB_LOGIN_URL = "https://accounts.google.com/signin/continue?sarp=1&scc=1&plt=AKgnsbfake"
