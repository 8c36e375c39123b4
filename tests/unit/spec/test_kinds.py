from __future__ import annotations

import re

import pytest

from controller.spec import meta, triggerpolicy
from controller.spec.binding import Binding, BindingSpec
from controller.spec.lane import Lane, LaneSpec, check_branch
from controller.spec.modelcatalog import ModelCatalog, ModelPrice
from controller.spec.state import DesiredState
from controller.spec.thread import Thread
from controller.spec.triggerpolicy import DEFAULT_TEMPLATE, TriggerPolicy
from controller.spec.workflow import Workflow
from controller.spec.workspace import Workspace
from tests.unit.spec.factories import doc, docs, problems, state

BINDING = doc("Binding", "b", "lane: l\nparticipant: p\ncommand: [claude]")
THREAD = doc("Thread", "t", "participants: [p]")
CATALOG = doc(
    "ModelCatalog", "m", "models: [{name: m, contextWindow: 1, inputPerMTok: 0, outputPerMTok: 0}]"
)
WORKFLOW = doc("Workflow", "w", "tasks: [{name: a, model: m, command: [x]}]")


def minimal_state() -> DesiredState:
    return state(
        doc("Workspace", "ws"),
        doc("Lane", "l"),
        BINDING,
        THREAD,
        doc("TriggerPolicy", "tp"),
        CATALOG,
        WORKFLOW,
    )


def attribute(value: object, dotted: str) -> object:
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


DEFAULTS: list[tuple[str, str, object]] = [
    ("workspace", "spec.repo", None),
    ("workspace", "spec.worktree_root", ".lanes/worktrees"),
    ("workspace", "spec.state_url", None),
    ("workspace", "spec.tmux_socket", None),
    ("workspace", "spec.allow_empty", False),
    ("workspace", "spec.max_deletions_per_pass", None),
    ("workspace", "spec.max_parallel_lanes", 8),
    ("workspace", "spec.resync_seconds", 30.0),
    ("workspace", "spec.hosts", ()),
    ("workspace", "spec.desired_ref", None),
    ("workspace", "metadata.labels", {}),
    ("workspace", "api_version", "lanes/v1"),
    ("lane", "spec.branch", None),
    ("lane", "branch", "lane/l"),
    ("lane", "spec.base", None),
    ("lane", "spec.on_dirty_cleanup", "preserve"),
    ("lane", "spec.suspend", False),
    ("binding", "spec.env", {}),
    ("binding", "spec.runtime", "tmux"),
    ("binding", "spec.restart", "on-failure"),
    ("binding", "spec.crash_loop.deaths", 5),
    ("binding", "spec.crash_loop.within", 600.0),
    ("binding", "spec.resume", None),
    ("binding", "spec.spawn", None),
    ("binding", "spec.heartbeat", None),
    ("binding", "spec.stop_grace_seconds", 10.0),
    ("thread", "spec.closed", False),
    ("policy", "spec.participants", None),
    ("policy", "spec.threads", None),
    ("policy", "spec.template", DEFAULT_TEMPLATE),
    ("policy", "spec.collision.quiet_seconds", 20.0),
    ("policy", "spec.collision.recheck_seconds", 5.0),
    ("policy", "spec.collision.max_defer_seconds", 60.0),
    ("policy", "spec.rate_limits.per_participant.count", 6),
    ("policy", "spec.rate_limits.per_participant.per", 3600.0),
    ("policy", "spec.rate_limits.per_thread.count", 20),
    ("policy", "spec.rate_limits.per_thread.per", 3600.0),
    ("policy", "spec.loop.max_no_progress_turns", 20),
    ("policy", "spec.loop.max_identical_findings", 3),
    ("policy", "spec.fallback.resume_attempts", 2),
    ("policy", "spec.fallback.stale_session_hours", 12.0),
    ("policy", "spec.payload.max_bytes", 2048),
    ("policy", "spec.payload.control_chars", "strip"),
    ("policy", "spec.retry.max_attempts", 5),
    ("policy", "spec.retry.backoff", 10.0),
    ("policy", "spec.retry.max_backoff", 300.0),
    ("workflow", "spec.max_parallel", 1),
    ("workflow", "spec.budget", None),
    ("workflow", "spec.hosts", ()),
    ("task", "prompt", ""),
    ("task", "depends_on", ()),
    ("task", "outputs", ()),
    ("task", "priority", 0),
]


@pytest.mark.parametrize(("which", "dotted", "expected"), DEFAULTS)
def test_every_default(which: str, dotted: str, expected: object) -> None:
    desired = minimal_state()
    documents = {
        "workspace": desired.workspace,
        "lane": desired.lanes["l"],
        "binding": desired.bindings["b"],
        "thread": desired.threads["t"],
        "policy": desired.policies["tp"],
        "workflow": desired.workflows["w"],
        "task": desired.workflows["w"].spec.tasks[0],
    }
    assert attribute(documents[which], dotted) == expected


def test_template_default_is_the_documented_one() -> None:
    assert DEFAULT_TEMPLATE == (
        "You have {unread} unread message(s) in {thread} from {sender}. "
        "Run: controller read {thread} --as {participant}"
    )


def test_python_callers_use_snake_case_names_and_defaults() -> None:
    lane = Lane(metadata=meta.Metadata(name="a"), spec=LaneSpec(on_dirty_cleanup="refuse"))
    binding = Binding(
        metadata=meta.Metadata(name="b"),
        spec=BindingSpec(lane="a", participant="p", command=("claude",), stop_grace_seconds=3),
    )
    assert (lane.kind, lane.spec.on_dirty_cleanup, lane.branch) == ("Lane", "refuse", "lane/a")
    assert binding.spec.stop_grace_seconds == 3.0
    assert Workspace(metadata=meta.Metadata(name="w")).spec.max_parallel_lanes == 8


@pytest.mark.parametrize(
    "ref", ["main", "origin/main", "refs/heads/deploy", "v1.2", "HEAD", "HEAD~1", "a" * 40]
)
def test_valid_desired_refs(ref: str) -> None:
    desired = state(doc("Workspace", "w", f"desiredRef: {ref}"))
    assert desired.workspace.spec.desired_ref == ref


def test_explicit_branch_wins() -> None:
    desired = state(doc("Lane", "a", "branch: feature/x"))
    assert desired.lanes["a"].branch == "feature/x"


@pytest.mark.parametrize(
    "branch", ["main", "feature/x", "a.b", "a-b_c", "lane/a/b", "v1.2", "x@y", "a.lockx", "ünï"]
)
def test_valid_branches(branch: str) -> None:
    assert check_branch(branch) == branch


@pytest.mark.parametrize(
    ("branch", "why"),
    [
        ("", "must not be empty"),
        ("HEAD", "must not be 'HEAD' or '@'"),
        ("@", "must not be 'HEAD' or '@'"),
        ("-x", "must not start with '-'"),
        ("/x", "must not start or end with '/'"),
        ("x/", "must not start or end with '/'"),
        ("x.", "must not end with '.'"),
        ("a..b", "must not contain '..'"),
        ("a//b", "must not contain '//'"),
        ("a@{b", "must not contain '@{'"),
        ("a b", "must not contain ' '"),
        ("a~1", "must not contain '~'"),
        ("a^", "must not contain '^'"),
        ("a:b", "must not contain ':'"),
        ("a?", "must not contain '?'"),
        ("a*", "must not contain '*'"),
        ("a[b", "must not contain '['"),
        ("a\\b", "must not contain '\\\\'"),
        ("a\x7fb", "must not contain '\\x7f'"),
        ("a\tb", "must not contain '\\t'"),
        ("a.lock", "no '/'-separated part may start with '.' or end with '.lock'"),
        ("a.lock/b", "no '/'-separated part may start with '.' or end with '.lock'"),
        (".a", "no '/'-separated part may start with '.' or end with '.lock'"),
        ("a/.b", "no '/'-separated part may start with '.' or end with '.lock'"),
    ],
)
def test_invalid_branches(branch: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"branch {why} (got {branch!r})")):
        check_branch(branch)


# Every validation error of every kind, with its exact location. Specs start on line 5.
FIELD_ERRORS = [
    (
        doc("Workspace", "w", "worktreeRoot: /abs"),
        "5: Workspace spec.worktreeRoot: worktreeRoot must be a relative path (got '/abs')",
    ),
    (
        doc("Workspace", "w", "worktreeRoot: a/../../b"),
        "5: Workspace spec.worktreeRoot: worktreeRoot must not contain '..' (got 'a/../../b')",
    ),
    (
        doc("Workspace", "w", "worktreeRoot: '.'"),
        "5: Workspace spec.worktreeRoot: worktreeRoot must be a folder below the repository, not "
        "'.'",
    ),
    (
        doc("Workspace", "w", "worktreeRoot: ''"),
        "5: Workspace spec.worktreeRoot: worktreeRoot must be a relative path (got '')",
    ),
    (
        doc("Workspace", "w", "stateUrl: mysql://x"),
        "5: Workspace spec.stateUrl: stateUrl must start with sqlite://, postgresql:// or "
        "postgresql+psycopg:// (got 'mysql://x')",
    ),
    (
        doc("Workspace", "w", "tmuxSocket: a/b"),
        "5: Workspace spec.tmuxSocket: tmuxSocket must be 1-64 of A-Z a-z 0-9 _ . - (got 'a/b')",
    ),
    (
        doc("Workspace", "w", "tmuxSocket: ''"),
        "5: Workspace spec.tmuxSocket: tmuxSocket must be 1-64 of A-Z a-z 0-9 _ . - (got '')",
    ),
    (
        doc("Workspace", "w", "allowEmpty: 'yes'"),
        "5: Workspace spec.allowEmpty: must be a valid boolean (got 'yes')",
    ),
    (
        doc("Workspace", "w", "maxDeletionsPerPass: 0"),
        "5: Workspace spec.maxDeletionsPerPass: must be greater than or equal to 1 (got 0)",
    ),
    (
        doc("Workspace", "w", "maxParallelLanes: 65"),
        "5: Workspace spec.maxParallelLanes: must be less than or equal to 64 (got 65)",
    ),
    (
        doc("Workspace", "w", "maxParallelLanes: '8'"),
        "5: Workspace spec.maxParallelLanes: must be a valid integer (got '8')",
    ),
    (
        doc("Workspace", "w", "resyncSeconds: 0"),
        "5: Workspace spec.resyncSeconds: must be longer than zero (got 0)",
    ),
    (
        doc("Workspace", "w", "repo: ''"),
        "5: Workspace spec.repo: repo must be a non-empty path",
    ),
    (
        doc("Workspace", "w", "hosts:\n- {name: a}\n- {name: A}"),
        "5: Workspace spec.hosts: host 'a' is listed more than once",
    ),
    (
        doc("Workspace", "w", "desiredRef: --output=x"),
        "5: Workspace spec.desiredRef: desiredRef must be a git revision such as main or "
        "origin/main, without white space, ':' or a leading '-' (got '--output=x')",
    ),
    (
        doc("Workspace", "w", "desiredRef: 'main:desired'"),
        "5: Workspace spec.desiredRef: desiredRef must be a git revision such as main or "
        "origin/main, without white space, ':' or a leading '-' (got 'main:desired')",
    ),
    (
        doc("Workspace", "w", "desiredRef: 'a b'"),
        "5: Workspace spec.desiredRef: desiredRef must be a git revision such as main or "
        "origin/main, without white space, ':' or a leading '-' (got 'a b')",
    ),
    (
        doc("Workspace", "w", "desiredRef: ''"),
        "5: Workspace spec.desiredRef: desiredRef must be a git revision such as main or "
        "origin/main, without white space, ':' or a leading '-' (got '')",
    ),
    (
        doc("Workspace", "w", "hosts:\n- {name: 'bad host'}"),
        "6: Workspace spec.hosts[0].name: must be a host name such as build-1 or "
        "build-1.example.com (got 'bad host')",
    ),
    (
        doc("Workspace", "w", "hosts:\n- name: a\n  lanes: [x, x]"),
        "7: Workspace spec.hosts[0].lanes: name 'x' is listed more than once",
    ),
    (
        doc("Lane", "a", "branch: a..b"),
        "5: Lane spec.branch: branch must not contain '..' (got 'a..b')",
    ),
    (
        doc("Lane", "a", "base: --force"),
        "5: Lane spec.base: base must be a git revision such as main or origin/main "
        "(got '--force')",
    ),
    (
        doc("Lane", "a", "onDirtyCleanup: delete"),
        "5: Lane spec.onDirtyCleanup: must be 'preserve' or 'refuse' (got 'delete')",
    ),
    (doc("Lane", "a", "suspend: 1"), "5: Lane spec.suspend: must be a valid boolean (got 1)"),
    (doc("Lane", "a", "[x]"), "4: Lane spec: must be a mapping"),
    (
        doc("Lane", "a", "branch: 5"),
        "5: Lane spec.branch: must be a valid string (got 5)",
    ),
    (
        doc("Binding", "b", "lane: l\nparticipant: p\ncommand: claude --continue"),
        "7: Binding spec.command: must be an argv list such as [claude, --continue], "
        "never a shell string",
    ),
    (
        doc("Binding", "b", "lane: l\nparticipant: p\ncommand: []"),
        "7: Binding spec.command: must name a program: an argv list such as [claude, --continue]",
    ),
    (
        doc("Binding", "b", "lane: l\nparticipant: p\ncommand: [x, 5]"),
        "7: Binding spec.command[1]: must be a valid string (got 5)",
    ),
    (
        doc("Binding", "b", "lane: l\nparticipant: p\ncommand: [x]\nresume: claude -c"),
        "8: Binding spec.resume: must be an argv list such as [claude, --continue], "
        "never a shell string",
    ),
    (
        doc("Binding", "b", 'lane: l\nparticipant: p\ncommand: [x]\nspawn: [x, "\\0"]'),
        "8: Binding spec.spawn: argv item 1 contains a NUL byte",
    ),
    (
        doc("Binding", "b", "participant: p\ncommand: [x]"),
        "4: Binding spec.lane: required field is missing",
    ),
    (doc("Binding", "b"), "1: Binding spec: required field is missing"),
    (
        doc("Binding", "b", "lane: L\nparticipant: p\ncommand: [x]"),
        "5: Binding spec.lane: must be a lowercase DNS label: at most 63 characters of a-z, "
        "0-9 and '-', starting and ending with a letter or digit (got 'L')",
    ),
    (
        doc("Binding", "b", "lane: l\nparticipant: p\ncommand: [x]\nenv: {LANE_NAME: x}"),
        "8: Binding spec.env: env name 'LANE_NAME' is reserved: the controller sets LANE_*, "
        "CONTROLLER_STATE, CONTROLLER_WORKSPACE and CONTROLLER_DESIRED",
    ),
    (
        doc("Binding", "b", "lane: l\nparticipant: p\ncommand: [x]\nenv: {CONTROLLER_STATE: x}"),
        "8: Binding spec.env: env name 'CONTROLLER_STATE' is reserved: the controller sets "
        "LANE_*, CONTROLLER_STATE, CONTROLLER_WORKSPACE and CONTROLLER_DESIRED",
    ),
    (
        doc("Binding", "b", "lane: l\nparticipant: p\ncommand: [x]\nenv: {1A: x}"),
        "8: Binding spec.env: env name '1A' must match [A-Za-z_][A-Za-z0-9_]*",
    ),
    (
        doc("Binding", "b", "lane: l\nparticipant: p\ncommand: [x]\nenv:\n  A: 1"),
        "9: Binding spec.env.A: must be a valid string (got 1)",
    ),
    (
        doc("Binding", "b", 'lane: l\nparticipant: p\ncommand: [x]\nenv: {A: "\\0"}'),
        "8: Binding spec.env: env value of 'A' contains a NUL byte",
    ),
    (
        doc("Binding", "b", "lane: l\nparticipant: p\ncommand: [x]\nruntime: docker"),
        "8: Binding spec.runtime: must be 'tmux' or 'process' (got 'docker')",
    ),
    (
        doc("Binding", "b", "lane: l\nparticipant: p\ncommand: [x]\nrestart: sometimes"),
        "8: Binding spec.restart: must be 'always', 'on-failure' or 'never' (got 'sometimes')",
    ),
    (
        doc("Binding", "b", "lane: l\nparticipant: p\ncommand: [x]\ncrashLoop:\n  deaths: 1"),
        "9: Binding spec.crashLoop.deaths: must be greater than or equal to 2 (got 1)",
    ),
    (
        doc("Binding", "b", "lane: l\nparticipant: p\ncommand: [x]\ncrashLoop:\n  within: 0s"),
        "9: Binding spec.crashLoop.within: must be longer than zero (got '0s')",
    ),
    (
        doc("Binding", "b", "lane: l\nparticipant: p\ncommand: [x]\nheartbeat: {source: activity}"),
        "8: Binding spec.heartbeat.staleAfter: required field is missing",
    ),
    (
        doc(
            "Binding",
            "b",
            "lane: l\nparticipant: p\ncommand: [x]\nheartbeat:\n  source: x\n  staleAfter: 1m",
        ),
        "9: Binding spec.heartbeat.source: must be 'activity' or 'explicit' (got 'x')",
    ),
    (
        doc("Binding", "b", "lane: l\nparticipant: p\ncommand: [x]\nstopGraceSeconds: -1"),
        "8: Binding spec.stopGraceSeconds: must be a finite, non-negative duration (got -1)",
    ),
    (
        doc("Thread", "t", "participants: []"),
        "5: Thread spec.participants: must have at least 1 item(s)",
    ),
    (
        doc("Thread", "t", "participants: [a, b, a]"),
        "5: Thread spec.participants: name 'a' is listed more than once",
    ),
    (
        doc("Thread", "t", "participants:\n- a\n- Human"),
        "7: Thread spec.participants[1]: must be a lowercase DNS label: at most 63 characters "
        "of a-z, 0-9 and '-', starting and ending with a letter or digit (got 'Human')",
    ),
    (
        doc("Thread", "t", "participants: [a]\nclosed: no-thanks"),
        "6: Thread spec.closed: must be a valid boolean (got 'no-thanks')",
    ),
    (
        doc("TriggerPolicy", "p", "template: '{body}'"),
        "5: TriggerPolicy spec.template: template placeholder {body} is not allowed; use "
        "{participant}, {thread}, {unread} or {sender} (write {{ and }} for literal braces)",
    ),
    (
        doc("TriggerPolicy", "p", "template: 'hi {thread.name}'"),
        "5: TriggerPolicy spec.template: template placeholder {thread.name} is not allowed; use "
        "{participant}, {thread}, {unread} or {sender} (write {{ and }} for literal braces)",
    ),
    (
        doc("TriggerPolicy", "p", "template: 'hi {}'"),
        "5: TriggerPolicy spec.template: template placeholder {} is not allowed; use "
        "{participant}, {thread}, {unread} or {sender} (write {{ and }} for literal braces)",
    ),
    (
        doc("TriggerPolicy", "p", "template: 'hi {thread'"),
        "5: TriggerPolicy spec.template: template is not a valid format string: "
        "expected '}' before end of string",
    ),
    (
        doc("TriggerPolicy", "p", "template: ' '"),
        "5: TriggerPolicy spec.template: template must not be empty",
    ),
    (
        doc("TriggerPolicy", "p", "participants: [a, a]"),
        "5: TriggerPolicy spec.participants: name 'a' is listed more than once",
    ),
    (
        doc("TriggerPolicy", "p", "collision: {recheckSeconds: 0}"),
        "5: TriggerPolicy spec.collision.recheckSeconds: must be longer than zero (got 0)",
    ),
    (
        doc("TriggerPolicy", "p", "rateLimits:\n  perThread: {count: 0}"),
        "6: TriggerPolicy spec.rateLimits.perThread.count: must be greater than or equal to 1 "
        "(got 0)",
    ),
    (
        doc("TriggerPolicy", "p", "rateLimits:\n  perParticipant: {per: 1x}"),
        "6: TriggerPolicy spec.rateLimits.perParticipant.per: must be a duration such as 30, "
        "500ms, 20s, 10m, 12h or 1d (got '1x')",
    ),
    (
        doc("TriggerPolicy", "p", "loop: {maxNoProgressTurns: 0}"),
        "5: TriggerPolicy spec.loop.maxNoProgressTurns: must be greater than or equal to 1 (got 0)",
    ),
    (
        doc("TriggerPolicy", "p", "fallback: {resumeAttempts: -1}"),
        "5: TriggerPolicy spec.fallback.resumeAttempts: must be greater than or equal to 0 "
        "(got -1)",
    ),
    (
        doc("TriggerPolicy", "p", "fallback: {staleSessionHours: .inf}"),
        "5: TriggerPolicy spec.fallback.staleSessionHours: must be a finite number (got inf)",
    ),
    (
        doc("TriggerPolicy", "p", "payload: {maxBytes: 10}"),
        "5: TriggerPolicy spec.payload.maxBytes: must be greater than or equal to 64 (got 10)",
    ),
    (
        doc("TriggerPolicy", "p", "payload: {maxBytes: 65537}"),
        "5: TriggerPolicy spec.payload.maxBytes: must be less than or equal to 65536 (got 65537)",
    ),
    (
        doc("TriggerPolicy", "p", "payload: {controlChars: keep}"),
        "5: TriggerPolicy spec.payload.controlChars: must be 'strip' or 'reject' (got 'keep')",
    ),
    (
        doc("TriggerPolicy", "p", "retry: {maxAttempts: 0}"),
        "5: TriggerPolicy spec.retry.maxAttempts: must be greater than or equal to 1 (got 0)",
    ),
    (
        doc("TriggerPolicy", "p", "retry: {backoff: 1m, maxBackoff: 30s}"),
        "5: TriggerPolicy spec.retry: maxBackoff must not be shorter than backoff",
    ),
    (
        doc("ModelCatalog", "c", "models: []"),
        "5: ModelCatalog spec.models: must have at least 1 item(s)",
    ),
    (
        doc(
            "ModelCatalog",
            "c",
            "models:\n- {name: m, contextWindow: 0, inputPerMTok: 1, outputPerMTok: 1}",
        ),
        "6: ModelCatalog spec.models[0].contextWindow: must be greater than 0 (got 0)",
    ),
    (
        doc(
            "ModelCatalog",
            "c",
            "models:\n- {name: m, contextWindow: 1, inputPerMTok: -1, outputPerMTok: 1}",
        ),
        "6: ModelCatalog spec.models[0].inputPerMTok: must be greater than or equal to 0 (got -1)",
    ),
    (
        doc("ModelCatalog", "c", "models:\n- {name: m, contextWindow: 1, inputPerMTok: 1}"),
        "6: ModelCatalog spec.models[0].outputPerMTok: required field is missing",
    ),
    (
        doc(
            "ModelCatalog",
            "c",
            "models:\n- {name: m, contextWindow: 1, inputPerMTok: 1, outputPerMTok: 1}\n"
            "- {name: m, contextWindow: 2, inputPerMTok: 1, outputPerMTok: 1}",
        ),
        "5: ModelCatalog spec.models: model 'm' is listed more than once",
    ),
    (
        doc("Workflow", "w", "tasks:\n- {name: a, model: m, command: [x], runtime: tmux}"),
        "6: Workflow spec.tasks[0]: task 'a' runs in tmux, where its output goes to a terminal "
        "and cannot be parsed for usage: set usage: manual (the task reports with `controller "
        "usage add`), or use runtime: process",
    ),
    (
        doc("Workflow", "w", "tasks: []"),
        "5: Workflow spec.tasks: must have at least 1 item(s)",
    ),
    (
        doc("Workflow", "w", "maxParallel: 0\ntasks: [{name: a, model: m, command: [x]}]"),
        "5: Workflow spec.maxParallel: must be greater than or equal to 1 (got 0)",
    ),
    (
        doc("Workflow", "w", "budget: {maxTokens: 0}\ntasks: [{name: a, model: m, command: [x]}]"),
        "5: Workflow spec.budget.maxTokens: must be greater than 0 (got 0)",
    ),
    (
        doc(
            "Workflow",
            "w",
            "tasks:\n- {name: a, model: m, command: [x]}\n- {name: a, model: m, command: [x]}",
        ),
        "5: Workflow spec.tasks: task 'a' is listed more than once",
    ),
    (
        doc(
            "Workflow",
            "w",
            "tasks:\n- name: a\n  model: m\n  command: [x]\n  outputs: [/etc/passwd]",
        ),
        "9: Workflow spec.tasks[0].outputs: output must be a relative path (got '/etc/passwd')",
    ),
    (
        doc("Workflow", "w", "tasks:\n- name: a\n  model: m\n  command: [x]\n  outputs: [a, a]"),
        "9: Workflow spec.tasks[0].outputs: output 'a' is listed more than once",
    ),
    (
        doc("Workflow", "w", "tasks:\n- name: a\n  model: m\n  command: [x]\n  dependsOn: [b, b]"),
        "9: Workflow spec.tasks[0].dependsOn: name 'b' is listed more than once",
    ),
    (
        doc("Workflow", "w", "tasks:\n- name: a\n  model: ''\n  command: [x]"),
        "7: Workflow spec.tasks[0].model: must have at least 1 character (got '')",
    ),
    (
        doc("Workflow", "w", "tasks:\n- name: A\n  model: m\n  command: x"),
        "6: Workflow spec.tasks[0].name: must be a lowercase DNS label: at most 63 characters "
        "of a-z, 0-9 and '-', starting and ending with a letter or digit (got 'A')",
    ),
    (
        doc("Workflow", "w", "tasks:\n- name: a\n  model: m\n  command: [x, '{promt}']"),
        "8: Workflow spec.tasks[0].command: unknown placeholder {promt} in command; allowed: "
        "{prompt}, {promptFile}, {sessionId}, {taskBudgetUsd}",
    ),
    (
        doc("Workflow", "w", "tasks:\n- name: a\n  model: m\n  command: [x, '{oops']"),
        "8: Workflow spec.tasks[0].command: command item 1 ('{oops'): expected '}' before end "
        "of string; write {{ and }} for literal braces",
    ),
    (
        doc("Workflow", "w", "tasks:\n- name: a\n  model: m\n  command: [x]\n  prompt: hi"),
        "6: Workflow spec.tasks[0]: task 'a' has a prompt but its command has no {prompt} or "
        "{promptFile} to pass it",
    ),
    (
        doc("Workflow", "w", "tasks:\n- name: a\n  model: m\n  command: [x, '{taskBudgetUsd}']"),
        "4: Workflow spec: task 'a' uses {taskBudgetUsd}, which needs budget.maxCostUsd on the "
        "workflow",
    ),
    (
        doc(
            "Workflow",
            "w",
            "tasks:\n- {name: a, model: m, command: [x]}\n"
            "- {name: b, model: m, command: [x], dependsOn: [a], base: main}",
        ),
        "7: Workflow spec.tasks[1]: task 'b' sets base and dependsOn: a dependent branches from "
        "the merge of its dependencies' final commits",
    ),
    (
        doc("Workflow", "w", "tasks:\n- {name: a, model: m, command: [x], usage: claude}"),
        "6: Workflow spec.tasks[0].usage: must be 'auto', 'claude-json', 'claude-stream', "
        "'codex-jsonl', 'gemini-json', 'opencode-jsonl' or 'manual' (got 'claude')",
    ),
    (
        doc(
            "Workflow", "w", "tasks:\n- {name: a, model: m, command: [x], env: {CONTROLLER_RUN: x}}"
        ),
        "6: Workflow spec.tasks[0].env: env name 'CONTROLLER_RUN' is reserved: the controller "
        "sets it",
    ),
    (
        doc("Workflow", "w", "tasks:\n- {name: a, model: m, command: [x], retries: {limit: -1}}"),
        "6: Workflow spec.tasks[0].retries.limit: must be greater than or equal to 0 (got -1)",
    ),
    (
        doc("Workflow", "w", "tasks:\n- {name: a, model: m, command: [x], runtime: tmux}"),
        "6: Workflow spec.tasks[0]: task 'a' runs in tmux, where its output goes to a terminal "
        "and cannot be parsed for usage: set usage: manual (the task reports with `controller "
        "usage add`), or use runtime: process",
    ),
    (
        doc("Workflow", "w", "tasks: []"),
        "5: Workflow spec.tasks: must have at least 1 item(s)",
    ),
    (
        doc(
            "ModelCatalog",
            "c",
            "models: [{name: m, contextWindow: 100, maxOutputTokens: 100, inputPerMTok: 1, "
            "outputPerMTok: 1}]",
        ),
        "5: ModelCatalog spec.models[0]: model 'm': maxOutputTokens (100) must be smaller than "
        "contextWindow (100)",
    ),
    (
        doc("WorkflowRun", "r", "workflow: Nope"),
        "5: WorkflowRun spec.workflow: must be a lowercase DNS label: at most 63 characters of "
        "a-z, 0-9 and '-', starting and ending with a letter or digit (got 'Nope')",
    ),
]


@pytest.mark.parametrize(("text", "expected"), FIELD_ERRORS)
def test_field_errors_are_located(text: str, expected: str) -> None:
    assert problems(text)[0] == f"desired/test.yaml:{expected}"


def test_every_kind_is_covered() -> None:
    kinds = {text.split("\n")[1].removeprefix("kind: ") for text, _ in FIELD_ERRORS}
    assert kinds == {
        "Workspace",
        "Lane",
        "Binding",
        "Thread",
        "TriggerPolicy",
        "ModelCatalog",
        "Workflow",
        "WorkflowRun",
    }


def test_valid_documents_of_every_kind() -> None:
    desired = minimal_state()
    assert isinstance(desired.workspace, Workspace)
    assert isinstance(desired.threads["t"], Thread)
    assert isinstance(desired.policies["tp"], TriggerPolicy)
    assert isinstance(desired.catalogs["m"], ModelCatalog)
    assert isinstance(desired.workflows["w"], Workflow)


FULL = docs(
    doc(
        "Workspace",
        "main",
        """
        repo: /srv/repo
        worktreeRoot: wt/lanes
        stateUrl: postgresql+psycopg://lanes@db/lanes
        tmuxSocket: lanes_main.1
        allowEmpty: true
        maxDeletionsPerPass: 2
        maxParallelLanes: 64
        resyncSeconds: 1m
        desiredRef: origin/main
        hosts:
          - {name: build-1.example.com, lanes: [auth], matchLabels: {team: core}}
        """,
    ),
    doc(
        "Lane",
        "auth",
        "branch: feature/auth\nbase: origin/main\nonDirtyCleanup: refuse\nsuspend: true",
    ),
    doc(
        "Binding",
        "auth-claude",
        """
        lane: auth
        participant: claude-1
        command: [claude]
        env: {KEY: value, _X1: ""}
        runtime: process
        restart: always
        crashLoop: {deaths: 2, within: 5m}
        resume: [claude, --continue]
        spawn: [claude, "{summary}"]
        heartbeat: {source: explicit, staleAfter: 30m}
        stopGraceSeconds: 500ms
        """,
    ),
    doc("Thread", "review", "participants: [claude-1, human]\nclosed: true"),
    doc(
        "TriggerPolicy",
        "wake",
        """
        participants: [claude-1, human]
        threads: [review]
        template: "{participant}: {unread} in {thread} from {sender} {{literal}}"
        collision: {quietSeconds: 0, recheckSeconds: 1, maxDeferSeconds: 2m}
        rateLimits: {perParticipant: {count: 1, per: 1d}, perThread: {count: 2, per: 2h}}
        loop: {maxNoProgressTurns: 1, maxIdenticalFindings: 1}
        fallback: {resumeAttempts: 0, staleSessionHours: 0.5}
        payload: {maxBytes: 64, controlChars: reject}
        retry: {maxAttempts: 1, backoff: 1s, maxBackoff: 1s}
        """,
    ),
    doc(
        "ModelCatalog",
        "models",
        "models: [{name: claude-sonnet-4.5, contextWindow: 1, inputPerMTok: 0.5, outputPerMTok: "
        "0}]",
    ),
    doc(
        "Workflow",
        "w",
        """
        maxParallel: 3
        budget: {maxTokens: 10, maxCostUsd: 0.5}
        tasks:
          - name: a
            model: claude-sonnet-4.5
            command: [x, "{prompt}"]
            prompt: p
            outputs: [o/x.md]
            priority: -1
        """,
    ),
)

FULL_VALUES: list[tuple[str, str, object]] = [
    ("workspace", "spec.repo", "/srv/repo"),
    ("workspace", "spec.worktree_root", "wt/lanes"),
    ("workspace", "spec.state_url", "postgresql+psycopg://lanes@db/lanes"),
    ("workspace", "spec.tmux_socket", "lanes_main.1"),
    ("workspace", "spec.allow_empty", True),
    ("workspace", "spec.max_deletions_per_pass", 2),
    ("workspace", "spec.max_parallel_lanes", 64),
    ("workspace", "spec.resync_seconds", 60.0),
    ("workspace", "spec.desired_ref", "origin/main"),
    ("host", "name", "build-1.example.com"),
    ("host", "lanes", ("auth",)),
    ("host", "match_labels", {"team": "core"}),
    ("lane", "branch", "feature/auth"),
    ("lane", "spec.base", "origin/main"),
    ("lane", "spec.on_dirty_cleanup", "refuse"),
    ("lane", "spec.suspend", True),
    ("binding", "spec.env", {"KEY": "value", "_X1": ""}),
    ("binding", "spec.runtime", "process"),
    ("binding", "spec.restart", "always"),
    ("binding", "spec.crash_loop.deaths", 2),
    ("binding", "spec.crash_loop.within", 300.0),
    ("binding", "spec.resume", ("claude", "--continue")),
    ("binding", "spec.spawn", ("claude", "{summary}")),
    ("binding", "spec.heartbeat.source", "explicit"),
    ("binding", "spec.heartbeat.stale_after", 1800.0),
    ("binding", "spec.stop_grace_seconds", 0.5),
    ("thread", "spec.participants", ("claude-1", "human")),
    ("thread", "spec.closed", True),
    ("policy", "spec.participants", ("claude-1", "human")),
    ("policy", "spec.threads", ("review",)),
    ("policy", "spec.template", "{participant}: {unread} in {thread} from {sender} {{literal}}"),
    ("policy", "spec.collision.quiet_seconds", 0.0),
    ("policy", "spec.collision.max_defer_seconds", 120.0),
    ("policy", "spec.rate_limits.per_participant.per", 86400.0),
    ("policy", "spec.rate_limits.per_thread.count", 2),
    ("policy", "spec.fallback.stale_session_hours", 0.5),
    ("policy", "spec.payload.control_chars", "reject"),
    ("policy", "spec.retry.max_backoff", 1.0),
    (
        "catalog",
        "spec.models",
        (
            ModelPrice(
                name="claude-sonnet-4.5", context_window=1, input_per_m_tok=0.5, output_per_m_tok=0
            ),
        ),
    ),
    ("workflow", "spec.max_parallel", 3),
    ("workflow", "spec.budget.max_tokens", 10),
    ("workflow", "spec.budget.max_cost_usd", 0.5),
    ("task", "command", ("x", "{prompt}")),
    ("task", "outputs", ("o/x.md",)),
    ("task", "priority", -1),
]


@pytest.mark.parametrize(("which", "dotted", "expected"), FULL_VALUES)
def test_every_field_set(which: str, dotted: str, expected: object) -> None:
    desired = state(FULL)
    documents = {
        "workspace": desired.workspace,
        "host": desired.workspace.spec.hosts[0],
        "lane": desired.lanes["auth"],
        "binding": desired.bindings["auth-claude"],
        "thread": desired.threads["review"],
        "policy": desired.policies["wake"],
        "catalog": desired.catalogs["models"],
        "workflow": desired.workflows["w"],
        "task": desired.workflows["w"].spec.tasks[0],
    }
    assert attribute(documents[which], dotted) == expected


def test_a_wake_no_policy_selects_works_with_every_default() -> None:
    defaults = triggerpolicy.settings(None)
    rates, retry = defaults.rate_limits, defaults.retry
    assert (rates.per_participant.per, rates.per_thread.per) == (3600.0, 3600.0)
    assert (retry.max_attempts, retry.backoff, retry.max_backoff) == (5, 10.0, 300.0)
    spec = {"retry": {"maxAttempts": 2}}
    meta_ = {"name": "p"}
    policy = TriggerPolicy.model_validate(
        {"apiVersion": "lanes/v1", "kind": "TriggerPolicy", "metadata": meta_, "spec": spec}
    )
    assert triggerpolicy.settings(policy) is policy.spec
