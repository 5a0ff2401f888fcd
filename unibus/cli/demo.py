"""``unibus demo``: the order pipeline, with live progress and a summary."""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from unibus.cli.failures import reports_errors
from unibus.demo import MAX_ATTEMPTS, DemoReport, Pipeline, run_demo

__all__ = ["demo", "redacted", "summary_tables"]


@reports_errors
def demo(
    url: Annotated[str | None, typer.Option(
        help="Broker URL (default: UNIBUS_URL or the config file, else a fresh embedded "
             "SQLite database). The demo deletes and re-creates its orders.* topics.")] = None,
    orders: Annotated[int, typer.Option(min=1, help="How many orders to place.")] = 40,
    seed: Annotated[int, typer.Option(help="Picks which orders fail (counts stay the same).")
                    ] = 7,
    timeout: Annotated[float, typer.Option(min=1, help="Give up after this many seconds.")
                       ] = 120.0,
) -> None:
    """Run the e-commerce order pipeline, with retries and a dead-letter queue.

    orders.placed -> validation -> orders.validated -> payment -> orders.payment-processed
    -> fulfilment -> orders.fulfilled, and a notification service reading all four.
    """
    console = Console(highlight=False)
    progress = Progress(
        TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"), console=console,
    )
    bars: dict[str, TaskID] = {}

    def observe(pipeline: Pipeline) -> None:
        if not bars:  # started on the first event, so a refusal prints only its error
            progress.start()
            for name in ("placed", "validation", "payment", "fulfilment", "notification"):
                bars[name] = progress.add_task(name, total=None, note="")
        v, p, f, n = pipeline.stages
        total = len(pipeline.orders)
        progress.update(bars["placed"], completed=pipeline.published, total=total)
        for name, stage, reached in (("validation", v, pipeline.published),
                                     ("payment", p, len(v.succeeded)),
                                     ("fulfilment", f, len(p.succeeded))):
            settled = len(stage.succeeded) + len(stage.dead_lettered)
            note = f"retried {stage.retries}, dead-lettered {len(stage.dead_lettered)}"
            progress.update(bars[name], completed=settled, total=reached or None, note=note)
        events = pipeline.published + len(v.succeeded) + len(p.succeeded) + len(f.succeeded)
        progress.update(bars["notification"], completed=len(n.succeeded), total=events or None)

    try:
        report = asyncio.run(run_demo(url, orders=orders, seed=seed, observer=observe,
                                      timeout=timeout))
    finally:
        if bars:
            progress.stop()
    for table in summary_tables(report):
        console.print(table)


def redacted(url: str) -> str:
    """``url`` with its password hidden, for display."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def summary_tables(report: DemoReport) -> list[Table | str]:
    """Counts per stage, then the dead-letter queue."""
    stages = Table(title=f"{report.orders} orders on {escape(redacted(report.url))}",
                   title_justify="left")
    for name in ("consumer group", "writes", "in", "ok", "retries", "to DLQ"):
        stages.add_column(name, justify="left" if name in ("consumer group", "writes")
                          else "right", no_wrap=True)
    stages.add_row("(producer)", "orders.placed", "", str(report.orders), "", "")
    for stage in report.stages:
        stages.add_row(stage.group, stage.writes or "(e-mails)", str(len(stage.received)),
                       str(len(stage.succeeded)), str(stage.retries),
                       str(len(stage.dead_lettered)))
    dlq = Table(title=f"dead-letter queue: {len(report.dead_letters)} messages "
                      f"(retry budget: {MAX_ATTEMPTS} attempts)", title_justify="left")
    for name in ("topic", "id", "reason", "attempts"):
        dlq.add_column(name, justify="right" if name == "attempts" else "left",
                       overflow="fold")
    for row in report.dead_letters:
        dlq.add_row(row.topic, row.order_id or row.message_id, escape(row.reason),
                    str(row.attempts))
    if not report.dead_letters:
        return [stages, "dead-letter queue: empty"]
    return [stages, dlq]
