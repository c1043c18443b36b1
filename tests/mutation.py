"""
Mutation testing of the security-critical code (a standing check, run by
hand: it takes from minutes to hours, so it is not part of the test run).

    .venv/bin/pip install -e '.[mutation]'
    .venv/bin/python -m tests.mutation                 # every target
    .venv/bin/python -m tests.mutation records framing # some targets
    .venv/bin/python -m tests.mutation --list          # the targets

For each target module it copies the working tree to a temporary directory
(the checkout itself is never mutated), lets cosmic-ray make every mutant of
that module and runs the target's own fast test subset against each one with
trial.  A mutant the tests notice is I{killed}; one they do not is a
I{survivor}: either a test is missing or the mutant cannot change behaviour
(it is equivalent), and tests/MUTATION.rst says which for every survivor.

The report goes to C{build/mutation/}: C{summary.rst} (killed and survived
per module) and C{<target>.survivors.txt} (each survivor's diff).  Survivors
listed as equivalent in tests/MUTATION.rst are checked by reading the diffs
there, not automatically.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Target:
    """
    One module to mutate and the tests that must notice its mutants.
    """

    name: str
    module: str
    tests: tuple[str, ...]
    timeout: float = 20.0
    #: Only these functions (C{"Class.method"} or C{"function"}) are
    #: mutated; empty: the whole module.
    functions: tuple[str, ...] = ()


#: The security-critical modules, each with the smallest test subset that is
#: meant to guard it (fast enough for a run on two shared cores).
TARGETS: tuple[Target, ...] = (
    Target("records", "securechat/crypto/records.py",
           ("tests.test_records", "tests.test_forward_secrecy")),
    Target("schedule", "securechat/crypto/schedule.py",
           ("tests.test_records", "tests.test_vectors", "tests.test_forward_secrecy")),
    Target("suites", "securechat/crypto/suites.py",
           ("tests.test_records", "tests.test_handshake", "tests.test_vectors",
            "tests.test_spec_rules")),
    Target("handshake", "securechat/crypto/handshake.py",
           ("tests.test_handshake", "tests.test_handshake_rules", "tests.test_spec_rules",
            "tests.test_vectors", "tests.test_forward_secrecy")),
    # The parts the module split took out of crypto/handshake.py: the
    # constants and Config checks, the ephemeral key share, and checking
    # the peer's AUTH (identity kind, signature: the authentication path).
    Target("config", "securechat/crypto/config.py",
           ("tests.test_handshake", "tests.test_handshake_rules", "tests.test_spec_rules")),
    Target("keyshare", "securechat/crypto/keyshare.py",
           ("tests.test_handshake", "tests.test_spec_rules", "tests.test_vectors",
            "tests.test_forward_secrecy")),
    Target("peerproof", "securechat/crypto/peerproof.py",
           ("tests.test_handshake", "tests.test_handshake_rules", "tests.test_spec_rules",
            "tests.test_vectors", "tests.test_attacks.HandshakeInputAttacks")),
    # The handshake's steps split out later (the AUTH and key-schedule
    # steps, HELLO, the asynchronous signing step, alerts), and the
    # mailbox's pure core: not in the report yet (a fresh run is due).
    Target("authstep", "securechat/crypto/authstep.py",
           ("tests.test_handshake", "tests.test_handshake_rules", "tests.test_spec_rules",
            "tests.test_vectors", "tests.test_attacks.HandshakeInputAttacks")),
    Target("hellostep", "securechat/crypto/hellostep.py",
           ("tests.test_handshake", "tests.test_handshake_rules", "tests.test_spec_rules",
            "tests.test_vectors")),
    Target("signstep", "securechat/crypto/signstep.py",
           ("tests.test_handshake", "tests.test_handshake_signing", "tests.test_vectors")),
    Target("alerts", "securechat/crypto/alerts.py",
           ("tests.test_handshake", "tests.test_alert_attacks", "tests.test_spec_rules")),
    # The peer's AUTH step and the handshake's hand-written codecs (issue
    # 20, fourth round): the authentication path and what it parses.
    Target("peerauth", "securechat/crypto/peerauth.py",
           ("tests.test_handshake", "tests.test_handshake_rules", "tests.test_spec_rules",
            "tests.test_handshake_fastpath", "tests.test_attacks.HandshakeInputAttacks")),
    Target("hscodec", "securechat/wire/hscodec.py",
           ("tests.test_hscodec", "tests.test_handshake_fastpath", "tests.test_vectors")),
    Target("letters", "securechat/crypto/letters.py",
           ("tests.test_letters", "tests.test_vectors", "tests.test_independent_mailbox",
            "tests.test_sign_split")),
    Target("prekeys", "securechat/crypto/prekeys.py",
           ("tests.test_prekeys", "tests.test_letters", "tests.test_sign_split")),
    Target("receipts", "securechat/crypto/receipts.py",
           ("tests.test_letters", "tests.test_vectors", "tests.test_sign_split")),
    # The groups' membership rules (issue 15): what the relay and every
    # member check of a change.
    Target("groupstate", "securechat/crypto/groupstate.py",
           ("tests.test_groupstate",)),
    Target("keys", "securechat/crypto/keys.py",
           ("tests.test_keys", "tests.test_handshake", "tests.test_x509", "tests.test_vectors",
            "tests.test_pki", "tests.test_spec_rules", "tests.test_attacks.HandshakeInputAttacks")),
    Target("x509", "securechat/crypto/x509.py", ("tests.test_x509", "tests.test_x509_bounds")),
    Target("framing", "securechat/wire/framing.py",
           ("tests.test_wire", "tests.test_spec_rules")),
    Target("codec", "securechat/wire/codec.py", ("tests.test_wire", "tests.test_relay_messages")),
    Target("messages", "securechat/wire/messages.py",
           ("tests.test_wire", "tests.test_spec_rules", "tests.test_vectors")),
    Target("e2e", "securechat/wire/e2e.py",
           ("tests.test_wire", "tests.test_spec_rules", "tests.test_e2e_rules")),
    # The end-to-end rules of the client (module docstring of client/core.py),
    # not its view plumbing; since the module split the end-to-end layer is
    # in client/endtoend.py and the order rules in client/rules.py.
    Target("client-core", "securechat/client/core.py",
           ("tests.test_client_core", "tests.test_e2e_rules"),
           functions=("ChatClient.say", "ChatClient.stop", "ChatClient._chat_started",
                      "ChatClient._relayed", "ChatClient._chat_ended",
                      "ChatClient.verify_peer")),
    Target("client-e2e", "securechat/client/endtoend.py",
           ("tests.test_client_core", "tests.test_e2e_rules"),
           functions=("EndToEndChats._handle_e2e", "EndToEndChats._secured",
                      "EndToEndChats._e2e_failed", "EndToEndChats._send_e2e",
                      "EndToEndChats._flush_e2e")),
    Target("client-rules", "securechat/client/rules.py",
           ("tests.test_client_core", "tests.test_e2e_rules")),
    # Authentication and revocation on the relay: the session's half moved
    # to server/session.py in the module split.
    Target("relay-auth", "securechat/server/relay.py",
           ("tests.test_relay", "tests.test_relay_reasons", "tests.test_e2e_rules"),
           functions=("Relay.login", "Relay.revalidate", "Relay.connection_ended",
                      "Relay._relay")),
    Target("session-auth", "securechat/server/session.py",
           ("tests.test_relay", "tests.test_relay_reasons", "tests.test_e2e_rules"),
           functions=("UserSession.verify_peer", "UserSession.established")),
    # The relay's chat rules (requests, REQUEST_PENDING, accept, stop),
    # split out of server/relay.py.
    Target("relay-chats", "securechat/server/chats.py",
           ("tests.test_relay", "tests.test_relay_reasons", "tests.test_e2e_rules")),
    Target("directory", "securechat/server/directory.py",
           ("tests.test_relay", "tests.test_relay_reasons", "tests.test_spec_rules")),
)


def _line_ranges(path: Path, functions: tuple[str, ...]) -> list[str]:
    """
    The line ranges (C{"first-last"}) of C{functions} in the module at
    C{path}; an unknown name is an error.
    """
    tree = ast.parse(path.read_text())
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            found[node.name] = f"{node.lineno}-{node.end_lineno}"
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    found[f"{node.name}.{item.name}"] = f"{item.lineno}-{item.end_lineno}"
    missing = [name for name in functions if name not in found]
    if missing:
        raise SystemExit(f"{path}: no function(s) {', '.join(missing)}")
    return [found[name] for name in functions]


def _annotation_spans(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """
    Where the type annotations of the module at C{path} are.  With
    C{from __future__ import annotations} (every securechat module) they are
    never evaluated, so a mutant inside one is equivalent.
    """
    tree = ast.parse(path.read_text())
    nodes: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.returns is not None:
                nodes.append(node.returns)
            args = node.args
            for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs,
                        *([args.vararg] if args.vararg else []),
                        *([args.kwarg] if args.kwarg else [])]:
                if arg.annotation is not None:
                    nodes.append(arg.annotation)
        elif isinstance(node, ast.AnnAssign):
            nodes.append(node.annotation)
    return [((n.lineno, n.col_offset), (n.end_lineno or n.lineno, n.end_col_offset or 0))
            for n in nodes]


def _skip_annotations(session: Path, module: Path) -> int:
    """
    Mark the mutants inside annotations as skipped; return how many.
    """
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    spans = _annotation_spans(module)
    skipped = []
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in db.pending_work_items:
            for mutation in item.mutations:
                start = tuple(mutation.start_pos)
                if any(first <= start < last for first, last in spans):
                    skipped.append(item.job_id)
        if skipped:
            db.set_multiple_results(skipped, WorkResult(
                output="in an annotation (never evaluated): equivalent",
                worker_outcome=WorkerOutcome.SKIPPED))
    return len(skipped)


def _copy_tree(destination: Path) -> None:
    """
    Copy the checkout's sources and tests (not .git, .venv or build output)
    to C{destination}.
    """
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "_trial_temp*", "__pycache__",
        ".mypy_cache", ".hypothesis", "mutants")
    shutil.copytree(ROOT, destination, ignore=ignore)


def _config(target: Target, tree: Path) -> str:
    command = " ".join([sys.executable, "-m", "twisted.trial", *target.tests])
    lines = []
    if target.functions:
        ranges = ", ".join(f'"{r}"' for r in _line_ranges(tree / target.module, target.functions))
        lines = ["[cosmic-ray.filters.line-filter.lines]", f'"{target.module}" = [{ranges}]', ""]
    return "\n".join([
        "[cosmic-ray]",
        f'module-path = "{target.module}"',
        f"timeout = {target.timeout}",
        "excluded-modules = []",
        f'test-command = "{command}"',
        "",
        "[cosmic-ray.distributor]",
        'name = "local"',
        "",
        "[cosmic-ray.filters.operators-filter]",
        # Mutating a docstring or a type annotation string changes nothing.
        "exclude-operators = []",
        "",
        *lines,
    ])


def _run(args: list[str], cwd: Path) -> None:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    subprocess.run(args, cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def run_target(target: Target, work: Path, report: Path) -> dict[str, object]:
    """
    Mutate one target in a fresh copy of the tree; return its counts and
    write its survivors' diffs to C{report}.
    """
    tree = work / target.name
    _copy_tree(tree)
    config = tree / "mutation.toml"
    config.write_text(_config(target, tree))
    session = tree / "mutation.sqlite"
    _run([_tool("cosmic-ray"), "init", str(config), str(session)], tree)
    _run([_tool("cr-filter-pragma"), str(session)], tree)
    annotations = _skip_annotations(session, tree / target.module)
    if target.functions:
        _run([_tool("cr-filter-lines"), "--config", str(config), str(session)], tree)
    _run([_tool("cosmic-ray"), "baseline", str(config)], tree)
    _run([_tool("cosmic-ray"), "exec", str(config), str(session)], tree)
    dump = subprocess.run([_tool("cosmic-ray"), "dump", str(session)], cwd=tree,
                          check=True, capture_output=True, text=True).stdout
    killed = survived = incompetent = skipped = 0
    skipped -= annotations  # counted on their own
    survivors: list[str] = []
    for line in dump.splitlines():
        item, result = json.loads(line)
        if result is None:
            continue
        if result["worker_outcome"] == "skipped":
            skipped += 1
        elif result["worker_outcome"] != "normal":
            incompetent += 1
        elif result["test_outcome"] == "survived":
            survived += 1
            mutation = item["mutations"][0]
            survivors.append(
                f"--- {mutation['operator_name']} occurrence {mutation['occurrence']}"
                f" at line {mutation['start_pos'][0]}\n{result['diff']}\n")
        else:
            killed += 1
    (report / f"{target.name}.survivors.txt").write_text("".join(survivors))
    return {"target": target.name, "module": target.module, "killed": killed,
            "survived": survived, "incompetent": incompetent, "skipped": skipped,
            "annotations": annotations}


def _summary(rows: list[dict[str, object]]) -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rule = "=" * 34 + " " + " ".join("=" * w for w in (7, 8, 7, 11, 11, 7))
    lines = [f"Mutation run {stamp} (annotation: mutants in type annotations, never evaluated; "
             "skipped: outside the target's functions)", "", rule,
             f"{'module':34} {'killed':7} {'survived':8} {'killed%':7} {'incompetent':11} "
             f"{'annotation':11} skipped", rule]
    for row in rows:
        tried = int(row["killed"]) + int(row["survived"])  # type: ignore[call-overload]
        share = f"{100 * int(row['killed']) / tried:.1f}" if tried else "-"  # type: ignore[call-overload]
        lines.append(f"{row['module']!s:34} {row['killed']!s:7} {row['survived']!s:8} {share:7} "
                     f"{row['incompetent']!s:11} {row.get('annotations', 0)!s:11} {row['skipped']!s}")
    lines.append(rule)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", help="target names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument("--report", default=str(ROOT / "build" / "mutation"),
                        help="report directory (default: build/mutation)")
    options = parser.parse_args(argv)
    by_name = {target.name: target for target in TARGETS}
    if options.list:
        for target in TARGETS:
            # Fails (SystemExit) on a module or function that is not there.
            if target.functions:
                _line_ranges(ROOT / target.module, target.functions)
            elif not (ROOT / target.module).is_file():
                raise SystemExit(f"{target.module}: no such file")
            print(f"{target.name:12} {target.module}  <- {' '.join(target.tests)}")
        return 0
    unknown = [name for name in options.targets if name not in by_name]
    if unknown:
        parser.error(f"unknown target(s): {', '.join(unknown)}; see --list")
    if shutil.which("cosmic-ray", path=str(Path(sys.executable).parent)) is None:
        parser.error("cosmic-ray is not installed: pip install -e '.[mutation]'")
    chosen = [by_name[name] for name in options.targets] or list(TARGETS)
    report = Path(options.report)
    report.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="securechat-mutation-") as work:
        for target in chosen:
            print(f"mutating {target.module} ...", flush=True)
            row = run_target(target, Path(work), report)
            print(f"  killed {row['killed']}, survived {row['survived']}, "
                  f"incompetent {row['incompetent']}", flush=True)
            rows.append(row)
    summary = _summary(rows)
    (report / "summary.rst").write_text(summary)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
