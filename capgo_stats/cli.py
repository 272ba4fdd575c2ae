"""The `flask` commands of capgo-stats."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from capgo_stats import alerts, example, filters, fold, reports
from capgo_stats.errors import ApiError
from capgo_stats.filters import Filters
from capgo_stats.protocol import DAY_MS, now_ms, stored_id
from capgo_stats.render import export
from capgo_stats.store import PostgresStore, SQLiteStore, Store, StoreUnavailable, day_of
from capgo_stats.store.copy import CopyRefused, copy_sqlite_to_postgres


@click.command("init-db")
@click.confirmation_option(prompt="This deletes every stored event. Recreate the database?")
@with_appcontext
def init_db_command() -> None:
    """Delete all data and recreate the database from schema.sql."""
    store = _store()
    store.reset()
    click.echo(f"Initialized the database at {store.path}.")


@click.command("forget-device")
@click.argument("device")
@with_appcontext
def forget_device_command(device: str) -> None:
    """Delete every event of a device, given its device_id or a custom_id it sent.

    \b
    Example:
      flask forget-device 3F2504E0-4F89-41D3-9A0C-0305E82C3301
      flask forget-device someone@example.com
    """
    if not device.strip():
        raise click.BadParameter("give a device_id or custom_id, not an empty string.")
    secret = current_app.config["STATS_HASH_SECRET"]
    # Also the raw form when hashing is on: rows stored before the secret was set hold it.
    secrets = ["", secret] if secret else [""]
    device_ids = {stored_id("device_id", device, s) for s in secrets}
    custom_ids = {stored_id("custom_id", device, s) for s in secrets}
    try:
        deleted = fold.forget_device(
            _store(), sorted(i for i in device_ids if i), sorted(i for i in custom_ids if i)
        )
    except StoreUnavailable as e:
        raise click.ClickException(f"The database cannot take writes right now: {e}") from None
    click.echo(f"Deleted {deleted} event{'' if deleted == 1 else 's'} of that device.")


@click.command("prune")
@click.option(
    "--days",
    type=click.IntRange(min=1),
    help="Keep this many days of raw events. Default: STATS_RETENTION_DAYS.",
)
@with_appcontext
def prune_command(days: int | None) -> None:
    """Delete raw events older than N days; counts, versions and timelines keep them.

    \b
    Example, from cron every night:
        flask prune --days 90
    """
    days = days or current_app.config["STATS_RETENTION_DAYS"]
    if not days:
        raise click.UsageError("Give --days N, or set STATS_RETENTION_DAYS.")
    before = now_ms() - days * DAY_MS
    deleted = fold.prune(_store(), before)
    click.echo(f"Deleted {deleted} raw events older than {days} days (before {day_of(before)}).")


# -- ops: export and counts ----------------------------------------------------------------------

# The event filters, named as in the routes' query strings (--app-id is ?app_id=).
FILTER_OPTIONS = (
    ("app_id", "ID", "Only events of this app, e.g. com.example.app."),
    ("action", "NAME", "Only events with this action, e.g. set."),
    ("platform", "NAME", "Only events from this platform: android, ios or electron."),
    ("since", "TIME", "Event time at or after this ISO 8601 date or datetime (UTC by default)."),
    ("until", "TIME", "Event time before this instant; a bare date means the end of that day."),
)


def filter_options(command: Callable) -> Callable:
    """Add the event filter options, with the routes' names and meanings, to a command."""
    for name, metavar, help_text in reversed(FILTER_OPTIONS):
        flag = "--" + name.replace("_", "-")
        command = click.option(flag, name, metavar=metavar, help=help_text)(command)
    return command


def parse_filter_options(options: dict[str, Any]) -> Filters:
    """The filters of a command's options, parsed as the routes parse their query string."""
    try:
        return filters.parse(options)
    except ApiError as e:
        flag = "--" + (e.param or "").replace("_", "-")
        raise click.BadParameter(e.message, param_hint=f"'{flag}'") from None


@click.command("export")
@filter_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(export.FORMATS),
    default="csv",
    show_default=True,
    help="csv: one header row, spreadsheet-safe cells; ndjson: one JSON object per line.",
)
@click.option(
    "--out",
    metavar="FILE",
    type=click.Path(dir_okay=False, writable=True),
    help="Write to FILE (replaced only once the export is complete) instead of stdout.",
)
@with_appcontext
def export_command(fmt: str, out: str | None, **options: Any) -> None:
    """Export the stored events, by app and oldest first, as CSV or NDJSON (format 1).

    Streams in constant memory, whatever the number of events. The columns are listed in
    docs/api.md ("Export format").

    \b
    Examples:
      flask export --since 2026-11-01 > events.csv
      flask export --format ndjson --app-id com.example.app --out events.ndjson
    """
    store = _store()
    if out is not None:
        _refuse_live_database(out, store.path)
    chunks = export.chunks(store, parse_filter_options(options), fmt)
    if out is None:
        _write_stdout(chunks)
        return
    partial = f"{out}.partial"
    try:
        file = open(partial, "w", encoding="utf-8", newline="")
    except OSError as e:
        message = f"cannot write {out!r}: {e.strerror}."
        raise click.BadParameter(message, param_hint="'--out'") from None
    try:
        with file:
            file.writelines(chunks)
        os.replace(partial, out)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    click.echo(f"Exported the events to {out}.", err=True)


# The files SQLite keeps beside a database: writing over any of them loses or corrupts events.
DATABASE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def _refuse_live_database(out: str, database: str) -> None:
    """Exit 2 when --out (or the FILE.partial written first) is the live database or its files."""
    if _is_live(out, database) or _is_live(f"{out}.partial", database):
        message = (
            f"{out!r} is the live database {database!r} (or one of its -wal, -shm or -journal"
            " files): the export would overwrite the stored events. Write it to another file."
        )
        raise click.BadParameter(message, param_hint="'--out'")


def _is_live(path: str, database: str) -> bool:
    """True when path names the database or a file of it, by any spelling or link."""
    target = os.path.realpath(path)
    for base in {database, os.path.realpath(database)}:  # SQLite puts its -wal by the real file
        for name in (base + suffix for suffix in DATABASE_SUFFIXES):
            if target == os.path.realpath(name) or _same_file(path, name):
                return True
    return False


def _same_file(a: str, b: str) -> bool:
    """os.path.samefile, False when either is missing (a hard link is the same file)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _write_stdout(chunks: Any) -> None:
    """Write the export to stdout; a reader that stops early (`| head`) is not an error."""
    try:
        for chunk in chunks:
            click.echo(chunk, nl=False)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would report the pipe again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)


@click.command("counts")
@filter_options
@with_appcontext
def counts_command(**options: Any) -> None:
    """Print the event counts by app and action, as GET /stats/counts, in aligned columns.

    \b
    Example:
      flask counts --app-id com.example.app --since 2026-11-01
    """
    rows = _read_store().counts(parse_filter_options(options))
    if not rows:
        click.echo("No events match.")
        return
    table = [("app_id", "action", "count")]
    table += [(_printable(r["app_id"]), _printable(r["action"]), str(r["count"])) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for app_id, action, count in table:
        click.echo(f"{app_id:<{widths[0]}}  {action:<{widths[1]}}  {count:>{widths[2]}}")


def _printable(text: str) -> str:
    """Text safe to print on a terminal: control characters (escape sequences) are escaped."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


# -- insights: release gate and example data ---------------------------------------------------


class Rate(click.ParamType):
    """A rate as a fraction (0.05) or a percentage (5%)."""

    name = "rate"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        """Parse "0.05" or "5%" into 0.05; fail unless it is between 0 and 1."""
        if isinstance(value, float):
            return value
        text = str(value).strip()
        try:
            rate = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            self.fail(f"{value!r} is not a rate such as 0.05 or 5%.", param, ctx)
        if not 0 <= rate <= 1:
            self.fail(f"{value!r} is not between 0 and 1 (0% and 100%).", param, ctx)
        return rate


def wilson_options(command: Callable) -> Callable:
    """The limits judged on a Wilson lower bound, shared by `flask gate` and `flask alerts`."""
    options = [
        click.option("--max-device-fail-rate", type=Rate(), help="Highest acceptable Wilson"
                     " lower bound of failed / (installed + failed) devices: 0.05 or 5%."),
        click.option("--max-issue-rate", type=Rate(), help="Highest acceptable Wilson lower"
                     " bound of issue devices / active devices."),
        click.option("--min-devices", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Fewest devices (reporting, with an outcome, or active) a version"
                     " needs before it is judged."),
        click.option("--confidence", default=0.95, show_default=True,
                     type=click.FloatRange(min=0, max=1, min_open=True, max_open=True),
                     help="Confidence of the Wilson interval whose lower bound is judged."),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


@click.command("gate")
@click.option("--app-id", required=True, help="The app, e.g. com.example.app.")
@click.option("--version", "version", required=True, help="The bundle version to judge.")
@click.option(
    "--max-fail-rate",
    type=Rate(),
    help="Highest acceptable failures / (installs + failures): 0.05 or 5%.",
)
@wilson_options
@with_appcontext
def gate_command(
    app_id: str,
    version: str,
    max_fail_rate: float | None,
    max_device_fail_rate: float | None,
    max_issue_rate: float | None,
    min_devices: int,
    confidence: float,
) -> None:
    """Decide whether a bundle may be promoted: exit 0 pass, 1 fail, 2 not enough data.

    \b
    Counts as GET /stats/versions and /stats/health do, prod devices, all stored history.
    Each limit given is judged on its own line; any FAIL exits 1, else any NO DATA 2.
    Example, in a CI pipeline:
        flask gate --app-id com.example.app --version 1.2.3 --max-fail-rate 2% --min-devices 50
        flask gate --app-id com.example.app --version 1.2.3 --max-device-fail-rate 2%
    """
    if max_fail_rate is None and max_device_fail_rate is None and max_issue_rate is None:
        raise click.UsageError(
            "Give at least one of --max-fail-rate, --max-device-fail-rate, --max-issue-rate."
        )
    store, rule, verdicts = _read_store(), (min_devices, confidence), []
    if max_fail_rate is not None:
        verdicts.append(reports.gate(store, app_id, version, max_fail_rate, min_devices))
    for kind, limit in (("device", max_device_fail_rate), ("issue", max_issue_rate)):
        if limit is not None:
            verdicts.append(reports.wilson_gate(store, app_id, version, kind, limit, rule))
    for verdict in verdicts:
        click.echo(verdict.line)
    codes = {verdict.code for verdict in verdicts}
    raise SystemExit(1 if 1 in codes else 2 if 2 in codes else 0)


@click.command("alerts")
@click.option("--webhook", required=True, help="The http(s) URL each new alert is POSTed to.")
@click.option(
    "--silent-hours",
    type=click.FloatRange(min=0, min_open=True),
    help="Alert when an app sent no event for more than H hours.",
)
@wilson_options
@with_appcontext
def alerts_command(webhook: str, **limits: Any) -> None:
    """Check once and POST one JSON message per new condition; exit 1 if a POST failed.

    \b
    Each condition is sent once while it holds (the database remembers it); one that clears
    is sent again if it comes back. With STATS_ALERT_SECRET set, each message carries
    X-Capgo-Stats-Signature: sha256=<hex HMAC-SHA256 of the body>. Run it from cron:
        flask alerts --webhook https://hooks.example.com/x --silent-hours 6 --max-issue-rate 5%
    """
    if not webhook.lower().startswith(("http://", "https://")):
        raise click.BadParameter("must be an http:// or https:// URL.", param_hint="--webhook")
    wanted = alerts.Limits(**limits)
    if (wanted.silent_hours, wanted.max_device_fail_rate, wanted.max_issue_rate) == (None,) * 3:
        raise click.UsageError(
            "Give at least one of --silent-hours, --max-device-fail-rate, --max-issue-rate."
        )
    secret = current_app.config["STATS_ALERT_SECRET"]
    outcome = alerts.check(_read_store(), wanted, webhook, secret, now_ms())
    for line in outcome.lines:
        click.echo(line)
    raise SystemExit(0 if outcome.ok else 1)


@click.command("make-example")
@click.option(
    "--out",
    default="stats.db.example",
    show_default=True,
    type=click.Path(dir_okay=False, writable=True),
    help="Where to write the example database (replaced if it exists).",
)
@with_appcontext
def make_example_command(out: str) -> None:
    """Write the example database: 30 days, three apps, rollouts, failures, refused events.

    \b
    The same bytes on every run (fixed seed and dates). To look at it:
        cp stats.db.example stats.db && flask run
    """
    stored = example.build(out)
    click.echo(f"Wrote {stored} events to {out}.")


@click.command("fold")
@with_appcontext
def fold_command() -> None:
    """Fold every stored event the rollups do not count yet (the server does it by itself)."""
    try:
        folded = fold.catch_up(_store())
    except StoreUnavailable as e:
        raise click.ClickException(f"The database cannot take writes right now: {e}") from None
    click.echo(f"Folded {folded} event{'' if folded == 1 else 's'}.")


@click.command("rebuild-rollups")
@click.confirmation_option(prompt="Recompute every rollup of the period still held as raw events?")
@with_appcontext
def rebuild_rollups_command() -> None:
    """Recompute the rollups from the raw events still held, after a counting rule changed.

    \b
    Days and hours whose raw events were pruned keep their counts as they are. One transaction:
    ingest waits (and may answer 503, which the plugin retries) until it is done.
    """
    try:
        folded, since = fold.rebuild(_store())
    except StoreUnavailable as e:
        raise click.ClickException(f"The database cannot take writes right now: {e}") from None
    held = f"from {day_of(since)} on" if since else "all of it: nothing was pruned"
    click.echo(f"Rebuilt the rollups from {folded} raw events ({held}).")


def _store() -> Store:
    """The app's store."""
    return current_app.extensions["store"]


def _read_store() -> Store:
    """The app's store with every stored event folded, for the commands that read figures."""
    store = _store()
    fold.before_read(store)
    return store


@click.command("copy-db")
@click.option(
    "--to",
    "url",
    required=True,
    help="An empty PostgreSQL database: postgresql://user:password@host:port/database.",
)
@with_appcontext
def copy_db_command(url: str) -> None:
    """Copy the SQLite database at STATS_DB into an empty PostgreSQL database, history and all.

    \b
    Example:
      flask copy-db --to postgresql://capgo:secret@db.internal:5432/capgo_stats
    """
    path = current_app.config["STATS_DB"]
    if not os.path.exists(path):
        raise click.ClickException(f"There is no SQLite database at {path} (STATS_DB) to copy.")
    store = _store()
    source = store if isinstance(store, SQLiteStore) else SQLiteStore(path)
    source.ensure_schema()  # any older schema this code reads, brought up to date first
    target = PostgresStore(url.strip(), pool_size=2, statement_timeout_ms=0)
    try:
        copied = copy_sqlite_to_postgres(
            source, target, lambda table, n: click.echo(f"  {table}: {n} rows")
        )
    except CopyRefused as e:
        raise click.ClickException(str(e)) from None
    except StoreUnavailable as e:
        raise click.ClickException(f"Cannot reach {target.path}: {e}") from None
    finally:
        target.close()
    if copied["(values without NUL)"]:
        click.echo(f"  {copied['(values without NUL)']} text values lost a NUL character.")
    click.echo(
        f"Copied {copied['event']} events and every rollup from {source.path} to {target.path};"
        f" every table holds as many rows as in SQLite, and {copied['(pending events)']} events"
        " wait for PostgreSQL's fold. To switch, stop the server, set"
        f" STATS_DATABASE_URL={target.path} (with its password) and start it again."
    )


def init_app(app: Flask) -> None:
    """Register the commands on the app."""
    app.cli.add_command(init_db_command)
    app.cli.add_command(forget_device_command)
    app.cli.add_command(prune_command)
    app.cli.add_command(export_command)
    app.cli.add_command(counts_command)
    app.cli.add_command(gate_command)
    app.cli.add_command(alerts_command)
    app.cli.add_command(make_example_command)
    app.cli.add_command(fold_command)
    app.cli.add_command(rebuild_rollups_command)
    app.cli.add_command(copy_db_command)
