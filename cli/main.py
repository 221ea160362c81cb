"""``exchangectl``: the operator's command line for the exchange.

    exchangectl import ROSTER -j 320412     load a legacy roster into a registry
    exchangectl replay verification         rebuild a projection from the outboxes
    exchangectl reconcile 320412 440703     reconcile a jurisdiction pair
    exchangectl keys list|create|rotate|revoke  a jurisdiction's signing keys
    exchangectl clients create|rotate|...   API clients: the authoritative clients file
    exchangectl audit verify|export         audit hash chains, disclosure histories
    exchangectl dlq list|show|replay        dead letters

Database URLs, service URLs and the operator credential come from the running stack's
``.run/stack.json`` (``--stack``), or from options and environment variables.
"""

from __future__ import annotations

import logging

import typer

from cli import audit_cmd, clients_cmd, dlq_cmd, keys_cmd
from cli.import_cmd import import_roster
from cli.reconcile_cmd import reconcile
from cli.replay_cmd import replay_command

app = typer.Typer(
    name="exchangectl",
    help="Operate the migrant-population exchange: import rosters, replay projections, reconcile, "
    "manage signing keys, check the audit log, handle dead letters.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold identity numbers and credentials
)
app.command("import")(import_roster)
app.command("replay")(replay_command)
app.command("reconcile")(reconcile)
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(clients_cmd.app, name="clients")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(dlq_cmd.app, name="dlq")


@app.callback()
def _main() -> None:
    logging.basicConfig(level=logging.WARNING)


if __name__ == "__main__":
    app()
