"""The Gmail IMAP session: connect, XOAUTH2, All Mail, search and fetch."""
