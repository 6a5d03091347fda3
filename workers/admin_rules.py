"""`crawler rules`: add, list, remove, test, enable and disable the rules that choose which
attachments to save.

A rule is validated by `Rule.from_document`, the crawler's own check, before it is stored: a rule
the crawler would refuse never reaches MongoDB, nor does one past the account's CRAWLER_MAX_RULES.
`rules test` runs `RuleTester` over the parts of a message file, so it answers exactly as a crawl
would, except for the Gmail search (`--query`), which only Gmail runs: there, every rule is taken
to have found the message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from bson import ObjectId

from crawler.errors import BadInput, BadRule
from crawler.rules import Rule, RuleTester
from crawler.store import Document
from workers.admin_context import (
    JsonOption,
    MongoUrlOption,
    Operator,
    fail,
    operator,
    operator_command,
)
from workers.admin_message import eml_parts
from workers.admin_output import console, next_crawl, print_json, table
from workers.admin_users import require_known

ANY_ACCOUNT = "any"  # the user_uuid of a rule tested without one: rules need a valid id
SIZE_HELP = "decoded bytes"

app = typer.Typer(
    help="Add, list, remove, test, enable and disable the rules that choose which attachments "
    "to save.",
    no_args_is_help=True,
)
RuleIdArgument = Annotated[str, typer.Argument(help="The rule's id (rules list).")]

QueryOption = Annotated[
    str | None, typer.Option(help="Gmail search terms that find the messages (X-GM-RAW).")
]
FilenameOption = Annotated[
    str | None, typer.Option(help="Case-insensitive glob on the attachment's name.")
]
ContentTypeOption = Annotated[
    list[str] | None,
    typer.Option("--content-type", help="type/subtype or type/*; repeat for several."),
]
MinSizeOption = Annotated[int | None, typer.Option(help=f"Smallest size, {SIZE_HELP}.")]
MaxSizeOption = Annotated[int | None, typer.Option(help=f"Largest size, {SIZE_HELP}.")]
DisabledOption = Annotated[
    bool, typer.Option("--disabled", help="The rule is disabled: kept, but it takes nothing.")
]


@dataclass(frozen=True)
class RuleOptions:
    """The fields of a rule as given on the command line."""

    query: str | None = None
    filename: str | None = None
    content_types: list[str] | None = None
    min_size: int | None = None
    max_size: int | None = None
    disabled: bool = False

    def fields(self) -> Document:
        """The rule fields that were given."""
        fields = {
            "query": self.query,
            "filename": self.filename,
            "content_types": self.content_types,
            "min_size": self.min_size,
            "max_size": self.max_size,
        }
        return {name: value for name, value in fields.items() if value is not None}

    def given(self) -> bool:
        """Whether any rule option was given."""
        return self.disabled or bool(self.fields())

    def rule(self, rule_id: Any, user_uuid: str) -> tuple[Document, Rule]:
        """The `rules` document and the rule; BadRule with one line that names the reason."""
        document = {"_id": rule_id, "user_uuid": user_uuid, **self.fields()}
        document["enabled"] = not self.disabled
        try:
            return document, Rule.from_document(document)
        except BadRule as error:
            raise BadRule(f"bad rule: {error.__cause__ or error}") from None


def problem(document: Document) -> str | None:
    """Why the crawler refuses a stored rule, or None when it takes it."""
    try:
        Rule.from_document(document)
    except BadRule as error:
        return str(error.__cause__ or error)
    return None


@app.command("add")
@operator_command
def add(
    *,
    user_uuid: Annotated[str, typer.Option(help="The account the rule belongs to.")],
    query: QueryOption = None,
    filename: FilenameOption = None,
    content_type: ContentTypeOption = None,
    min_size: MinSizeOption = None,
    max_size: MaxSizeOption = None,
    disabled: DisabledOption = False,
    mongodb_url: MongoUrlOption = None,
) -> None:
    """Add a rule and print its id. A rule with only --user-uuid keeps every attachment.

    An account has at most CRAWLER_MAX_RULES rules, enabled or not.
    """
    options = RuleOptions(query, filename, content_type, min_size, max_size, disabled)
    document, _ = options.rule(ObjectId(), user_uuid)
    with operator(mongodb_url) as ops:
        _check_room(ops, user_uuid)
        ops.store.add_rule(document)
        known = ops.store.account(user_uuid) is not None
    typer.echo(str(document["_id"]))
    if not known:
        typer.echo(f"note: there is no account {user_uuid} yet (crawler accounts add)", err=True)


def _check_room(ops: Operator, user_uuid: str) -> None:
    """BadInput when the account has as many rules as CRAWLER_MAX_RULES allows."""
    most = ops.settings.max_rules
    if ops.store.rules.count_documents({"user_uuid": user_uuid}, limit=most) >= most:
        raise BadInput(
            f"{user_uuid} has {most} rules already, as many as CRAWLER_MAX_RULES ({most}) allows:"
            " remove one (crawler rules remove) or raise CRAWLER_MAX_RULES"
        )


@app.command("list")
@operator_command
def list_rules(
    user_uuid: Annotated[str | None, typer.Option(help="Only this account's rules.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Rows at most.")] = 200,
    as_json: JsonOption = False,
    mongodb_url: MongoUrlOption = None,
) -> None:
    """List rules by id (the oldest first), with the reason the crawler would refuse any."""
    with operator(mongodb_url) as ops:
        if user_uuid is not None:
            require_known(ops, user_uuid, ops.store.has_rules)
        rows = [_rule_row(document) for document in ops.store.find_rules(user_uuid, limit)]
    if as_json:
        print_json(rows)
        return
    if not rows and user_uuid is not None:
        typer.echo(
            f"{user_uuid} has no rule: nothing is crawled until one is added "
            f"(crawler rules add --user-uuid {user_uuid})"
        )
        return
    columns = ("id", "user", "query", "filename", "content types", "min", "max", "enabled")
    console().print(table("Rules", (*columns, "problem"), [row.values() for row in rows]))


def _rule_row(document: Document) -> dict[str, Any]:
    types = document.get("content_types")
    return {
        "id": str(document.get("_id")),
        "user_uuid": document.get("user_uuid"),
        "query": document.get("query"),
        "filename": document.get("filename"),
        "content_types": ", ".join(map(str, types)) if isinstance(types, list) else types,
        "min_size": document.get("min_size"),
        "max_size": document.get("max_size"),
        "enabled": document.get("enabled", True),
        "problem": problem(document),
    }


@app.command("remove")
@operator_command
def remove(rule_id: RuleIdArgument, mongodb_url: MongoUrlOption = None) -> None:
    """Remove a rule. The attachments it saved stay."""
    with operator(mongodb_url) as ops:
        if not ops.store.remove_rule(rule_id):
            fail(f"no rule with id {rule_id}")
    typer.echo(f"removed rule {rule_id}")


@app.command("test")
@operator_command
def try_rules(
    message: Annotated[
        Path, typer.Argument(help="A message file (.eml).", exists=True, dir_okay=False)
    ],
    *,
    user_uuid: Annotated[
        str | None, typer.Option(help="Test this account's enabled rules.")
    ] = None,
    rule_id: Annotated[str | None, typer.Option(help="Test this stored rule.")] = None,
    query: QueryOption = None,
    filename: FilenameOption = None,
    content_type: ContentTypeOption = None,
    min_size: MinSizeOption = None,
    max_size: MaxSizeOption = None,
    disabled: DisabledOption = False,
    as_json: JsonOption = False,
    mongodb_url: MongoUrlOption = None,
) -> None:
    """Show which attachments of a message the rules would take.

    The rules: the stored rule --rule-id; else the rule that the options describe; else,
    with --user-uuid alone, that account's enabled rules; else one rule that takes every
    attachment. Gmail runs the queries, not this command: every rule is taken to have found
    the message.
    """
    options = RuleOptions(query, filename, content_type, min_size, max_size, disabled)
    rules, refused = _rules_to_test(options, user_uuid, rule_id, mongodb_url)
    tester = RuleTester(rules)
    found_by = {rule.id for rule in rules}
    rows = [
        {
            "part": part.part,
            "filename": part.filename,
            "content_type": part.content_type,
            "size": part.size,
            "inline": part.inline,
            "rules": tester.rule_ids(part, found_by),
        }
        for part in eml_parts(message.read_bytes())
    ]
    if as_json:
        print_json({"rules": [rule.id for rule in rules], "refused": refused, "parts": rows})
        return
    columns = ("part", "filename", "content type", "size", "inline", "taken by")
    result = table(f"Attachments of {message.name}", columns, map(_part_cells, rows))
    result.caption = "\n".join(_notes(rules, refused)) or None
    console().print(result)


def _part_cells(row: dict[str, Any]) -> list[Any]:
    return [
        *(row[key] for key in ("part", "filename", "content_type", "size", "inline")),
        ", ".join(row["rules"]) or "-",
    ]


def _notes(rules: list[Rule], refused: dict[str, str]) -> list[str]:
    notes = [f"rule {rule.id} is disabled: it takes nothing" for rule in rules if not rule.enabled]
    notes += [
        f"rule {rule_id} is refused by the crawler: {why}" for rule_id, why in refused.items()
    ]
    if any(rule.query for rule in rules):
        notes.append("Gmail runs the queries: here every rule is taken to have found the message")
    return notes


def _rules_to_test(
    options: RuleOptions, user_uuid: str | None, rule_id: str | None, mongodb_url: str | None
) -> tuple[list[Rule], dict[str, str]]:
    """The rules to test, and the stored ones the crawler refuses (by id, with the reason)."""
    if rule_id is not None and (options.given() or user_uuid is not None):
        raise BadInput("--rule-id tests that stored rule: give no other rule option")
    if rule_id is None and (options.given() or user_uuid is None):
        return [options.rule("options", user_uuid or ANY_ACCOUNT)[1]], {}
    with operator(mongodb_url) as ops:
        if rule_id is None:
            require_known(ops, str(user_uuid), ops.store.has_rules)
            documents = ops.store.enabled_rules(str(user_uuid))
        else:
            documents = [document] if (document := ops.store.rule(rule_id)) else []
    if not documents:
        fail(f"no rule with id {rule_id}" if rule_id else f"{user_uuid} has no enabled rule")
    usable, refused = [], {}
    for document in documents:
        why = problem(document)
        if why is None:
            usable.append(Rule.from_document(document))
        else:
            refused[str(document.get("_id"))] = why
    return usable, refused


@app.command("enable")
@operator_command
def enable(rule_id: RuleIdArgument, mongodb_url: MongoUrlOption = None) -> None:
    """Enable a rule: the account's next crawl uses it, and catches up on the mail it missed.

    A rule the crawler would refuse is not enabled: the command names the reason.
    """
    with operator(mongodb_url) as ops:
        document = _stored_rule(ops, rule_id)
        why = problem(document | {"enabled": True})
        if why is not None:
            raise BadRule(
                f"rule {rule_id} cannot be enabled: the crawler refuses it: {why}; remove it "
                "(crawler rules remove) and add it again"
            )
        before = ops.store.set_rule_enabled(rule_id, True) or _no_rule(rule_id)
        user_uuid = str(before.get("user_uuid"))
        status = ops.store.statuses.of(user_uuid) or {}
    if before.get("enabled", True) is True:
        typer.echo(f"rule {rule_id} of {user_uuid} is enabled already")
        return
    when = next_crawl(status.get("state"), status.get("next_crawl_at"), time.time())
    typer.echo(
        f"enabled rule {rule_id} of {user_uuid}: its next crawl uses it"
        + (f" (next crawl: {when})" if status else "")
        + f"; crawler accounts crawl-now {user_uuid} crawls it at once"
    )


@app.command("disable")
@operator_command
def disable(rule_id: RuleIdArgument, mongodb_url: MongoUrlOption = None) -> None:
    """Disable a rule: it is kept, but takes nothing from the next crawl on.

    The attachments it saved stay. An account whose rules are all disabled is not crawled.
    """
    with operator(mongodb_url) as ops:
        _stored_rule(ops, rule_id)
        before = ops.store.set_rule_enabled(rule_id, False) or _no_rule(rule_id)
        user_uuid = str(before.get("user_uuid"))
        _, enabled = ops.store.rule_counts([user_uuid]).get(user_uuid, (0, 0))
    if before.get("enabled", True) is False:
        typer.echo(f"rule {rule_id} of {user_uuid} is disabled already")
        return
    typer.echo(
        f"disabled rule {rule_id} of {user_uuid}: it takes nothing from the next crawl on "
        "(the attachments it saved stay)"
    )
    if not enabled:
        typer.echo(
            f"{user_uuid} has no enabled rule left: it is not crawled until one is enabled "
            f"(crawler rules enable {rule_id})"
        )


def _stored_rule(ops: Operator, rule_id: str) -> Document:
    return ops.store.rule(rule_id) or _no_rule(rule_id)


def _no_rule(rule_id: str) -> NoReturn:
    fail(f"no rule with id {rule_id}")
