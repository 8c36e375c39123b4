"""Commands for messages and wakes: post, read, threads, trigger, triggers, and the audited
overrides (forced wakes, unblocking, retrying dead jobs).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import click

from controller.cli import common, output
from controller.cli.common import EXIT_FAILED, EXIT_INVALID, Settings
from controller.executors import triggers as deliver
from controller.runtime import jobviews, messages, overrides, reconcile, wiring
from controller.spec.state import DesiredState
from controller.store import jobs, messaging, queries

MAX_BODY = messages.MAX_BODY


def register(group: click.Group) -> None:
    """Add these commands to the command line."""
    for command in (post, read, threads, trigger, triggers_group):
        group.add_command(command)


def _member(desired: DesiredState, thread: str, who: str) -> None:
    messages.check_member(desired, thread, who)  # refused: `error: ...`, exit 1


def _identity(given: str | None) -> str:
    me = wiring.lane_identity().participant
    if given is None and me is None:
        common.fail("say who you are with --as PARTICIPANT (or run inside a lane)")
    return str(given or me)


def _with_store(settings: Settings, fn: Callable[[queries.Store, DesiredState], Any]) -> Any:
    desired = common.load_or_exit(settings)
    store = common.store_for_agent(settings, wiring.lane_identity())
    try:
        return fn(store, desired)
    finally:
        store.close()


@click.command()
@common.global_options
@click.argument("thread")
@click.argument("text", required=False)
@click.option("--as", "who", default=None, help="Who is posting (default: $LANE_PARTICIPANT).")
@click.pass_context
@common.handle_errors
def post(
    ctx: click.Context, /, thread: str, text: str | None, who: str | None, **given: Any
) -> None:
    """Append a message to THREAD (TEXT, or standard input when TEXT is - or missing)."""
    settings = common.merge(ctx, **given)
    sender = _identity(who)
    body = sys.stdin.read(MAX_BODY + 1) if text in (None, "-") else str(text)
    if text in (None, "-"):
        body = body.removesuffix("\n")
    messages.check_body(body)

    def act(store: queries.Store, desired: DesiredState) -> int:
        now = common.clock().now()
        return messages.post(store, desired, thread=thread, sender=sender, body=body, now=now)

    seq = _with_store(settings, act)
    if settings.json:
        click.echo(output.to_json({"thread": thread, "seq": seq, "sender": sender}))
    else:
        click.echo(f"posted #{seq} to {thread} as {sender}")


@click.command()
@common.global_options
@click.argument("thread")
@click.option("--as", "who", default=None, help="Who is reading (default: $LANE_PARTICIPANT).")
@click.pass_context
@common.handle_errors
def read(ctx: click.Context, /, thread: str, who: str | None, **given: Any) -> None:
    """Print THREAD's messages you have not read, and mark them read."""
    settings = common.merge(ctx, **given)
    reader = _identity(who)

    def act(store: queries.Store, desired: DesiredState) -> list[messaging.Message]:
        _member(desired, thread, reader)
        return messaging.read(store, thread, reader)

    found = _with_store(settings, act)
    if settings.json:
        click.echo(output.to_json([_message_json(m) for m in found]))
        return
    for m in found:
        click.echo(f"#{m.seq} {m.sender} {m.at:%Y-%m-%d %H:%M:%S}Z\n{m.body}\n")
    if not found:
        click.echo(f"nothing unread in {thread}")


def _message_json(m: messaging.Message) -> dict[str, Any]:
    return {
        "thread": m.thread,
        "seq": m.seq,
        "sender": m.sender,
        "body": m.body,
        "at": m.at.isoformat(),
    }


@click.command()
@common.global_options
@click.pass_context
@common.handle_errors
def threads(ctx: click.Context, /, **given: Any) -> None:
    """List threads: members, open or closed, messages, and each member's unread count."""
    settings = common.merge(ctx, **given)

    def act(store: queries.Store, desired: DesiredState) -> list[dict[str, Any]]:
        heads = messaging.heads(store)
        from controller.core import triggers  # lazy: only this command needs it

        unread = {
            (u.participant, u.thread): u.count
            for u in messaging.unread(store, triggers.members(desired))
        }
        return [
            {
                "name": name,
                "participants": list(t.spec.participants),
                "closed": t.spec.closed,
                "messages": heads.get(name, 0),
                "unread": {p: unread.get((p, name), 0) for p in t.spec.participants},
            }
            for name, t in desired.threads.items()
        ]

    view = _with_store(settings, act)
    if settings.json:
        click.echo(output.to_json(view))
        return
    for t in view:
        state = "closed" if t["closed"] else "open"
        counts = ", ".join(f"{p} {n}" for p, n in t["unread"].items())
        line = f"{t['name']}  {state}  {t['messages']} message(s)  unread: {counts}"
        click.echo(line.rstrip())
    if not view:
        click.echo("no threads declared")


@click.command()
@common.global_options
@click.argument("participant")
@click.option("--thread", "thread", required=True, help="The thread to wake PARTICIPANT about.")
@click.option("--as", "caller", default=None, help="Who asks (recorded).")
@click.option("--force", is_flag=True, help="Skip collision, rate and loop checks (audited).")
@click.option("--reason", default=None, help="Why (required with --force).")
@click.pass_context
@common.handle_errors
def trigger(
    ctx: click.Context,
    /,
    participant: str,
    thread: str,
    caller: str | None,
    force: bool,
    reason: str | None,
    **given: Any,
) -> None:
    """Wake PARTICIPANT about THREAD now and print the result envelope."""
    settings = common.merge(ctx, **given)
    if force and not reason:
        common.fail("--force needs --reason TEXT (forced wakes are audited)")
    desired = common.load_or_exit(settings)
    _member(desired, thread, participant)
    if caller is not None:
        _member(desired, thread, caller)
    wake = functools.partial(
        overrides.trigger,
        desired=desired,
        participant=participant,
        thread=thread,
        force=force,
        reason=reason,
        caller=caller,
        lock_timeout=settings.lock_timeout,
        on_wait=common.waiting,
    )
    envelope = _with_reconciler(settings, desired, wake)
    if settings.json:
        click.echo(output.to_json(envelope.to_json()))
    else:
        until = f" until {envelope.until:%H:%M:%S}Z" if envelope.until else ""
        detail = f": {envelope.detail}" if envelope.detail else ""
        click.echo(f"{envelope.result} ({envelope.reason}){until}{detail}")
    if envelope.result in (deliver.Result.REFUSED, deliver.Result.DEAD):
        ctx.exit(EXIT_INVALID)


def _with_reconciler(
    settings: Settings,
    desired: DesiredState,
    fn: Callable[[reconcile.Reconciler], Awaitable[deliver.Envelope]],
) -> deliver.Envelope:
    """Run ``fn`` with a reconciler for the workspace, and close its wiring after."""
    rec = common.reconciler(settings, desired)
    try:
        return anyio.run(fn, rec)
    finally:
        rec.wiring.close()


@click.group("triggers", invoke_without_command=True)
@common.global_options
@click.option(
    "--state-filter",
    "states",
    multiple=True,
    type=click.Choice([str(s) for s in jobs.JobState]),
    help="Only these states.",
)
@click.pass_context
@common.handle_errors
def triggers_group(ctx: click.Context, /, states: tuple[str, ...], **given: Any) -> None:
    """The trigger queue: jobs and their attempts (`triggers retry JOB --reason R` re-queues)."""
    settings = common.merge(ctx, **given)
    if ctx.invoked_subcommand is not None:
        return

    def act(store: queries.Store, desired: DesiredState) -> list[dict[str, Any]]:
        return jobviews.triggers_view(store, states, desired)

    view = _with_store(settings, act)
    click.echo(output.to_json(view) if settings.json else triggers_text(view), nl=settings.json)


def triggers_text(view: list[dict[str, Any]]) -> str:
    """``controller triggers`` for people: a line per job (the daemon draws it the same)."""
    lines = []
    for j in view:
        last = j["attempts"][-1] if j["attempts"] else None
        tail = f"  last: {last['reason']} {last['detail'][:60]}" if last else ""
        if j.get("waiting"):
            tail += f"  waiting: {j['waiting']['reason']} (host {j['waiting']['host']})"
        lines.append(
            f"#{j['id']} {j['participant']} @ {j['thread']}  {j['state']}  "
            f"attempts {len(j['attempts'])}  due {j['dueAt']}{tail}".rstrip()
        )
    return "".join(f"{line}\n" for line in lines or ["no trigger jobs"])


@triggers_group.command("retry")
@common.global_options
@click.argument("job", type=int)
@click.option("--reason", required=True, help="Why the dead job is re-queued (recorded).")
@click.pass_context
@common.handle_errors
def retry(ctx: click.Context, /, job: int, reason: str, **given: Any) -> None:
    """Re-queue a dead job (audited)."""
    settings = common.merge(ctx, **given)

    target = common.override_target(settings)
    try:
        again = anyio.run(functools.partial(overrides.retry_job, target, job, reason=reason))
    finally:
        target.store.close()
    if again is None:
        common.fail(f"job {job} is not dead (only dead jobs can be retried)")
        return
    if settings.json:
        click.echo(output.to_json({"job": job, "requeuedAs": again.id}))
    else:
        click.echo(f"job {job} re-queued as #{again.id}")


def exit_for(result: reconcile.PassResult) -> int | None:
    """A failed wake makes ``--once`` exit 2."""
    return EXIT_FAILED if result.failed_wakes else None
