"""Run the Autobahn TestSuite's fuzzing client against our echo and the `websockets` echo.

The suite (Python 2) lives in its own virtualenv, made by `make conformance`;
this side starts the echo servers on free loopback ports, runs `wstest -m
fuzzingclient` once for all of them, reads its index.json and sums each
group's verdicts. The exit status is 1 when our server FAILED any case, or was
only NON-STRICT on one: the gateway claims strict conformance.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WSTEST = ROOT / ".conformance" / "venv" / "bin" / "wstest"
OURS = "hlgateway"
LIBRARY = "websockets"
SERVERS = {OURS: "bench.conformance.echo", LIBRARY: "bench.conformance.library"}

# Groups 1-7 (framing, pings, reserved bits, opcodes, fragmentation, UTF-8,
# closing), 10 (auto-fragmentation) and a slice of 12/13 (permessage-deflate:
# 1000 messages of up to 1 KiB, and of 64 KiB in fragments; 13: every offer and
# window size) take about a minute: CI runs them. The rest of 12/13 (the same
# up to 128 KiB) costs the Python 2 fuzzer 10-35 s a case.
FAST = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*"]
FAST += [f"12.1.{case}" for case in (1, 2, 3, 4, 5, 11)]
FAST += [f"13.{group}.{case}" for group in range(1, 8) for case in (1, 2, 3, 4)]
# 9 (limits and performance: messages up to 16 MiB) needs the raised size limit
# the echo servers start with.
FULL = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*", "12.*", "13.*"]
VERDICTS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
BEGIN, END = "<!-- conformance:begin -->", "<!-- conformance:end -->"


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    behavior: str
    close: str

    @property
    def group(self) -> int:
        return int(self.id.split(".", 1)[0])

    @property
    def verdict(self) -> str:
        """The worse of the message verdict and the closing verdict."""
        if "FAILED" in (self.behavior, self.close):
            return "FAILED"
        return self.behavior if self.behavior in VERDICTS else "FAILED"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"echo server on port {port} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"echo server on port {port} did not listen within {timeout:.0f} s")


def run_suite(
    agents: list[str], cases: list[str], outdir: Path, wstest: Path, timeout: float
) -> dict[str, list[Case]]:
    """One fuzzing client per server, side by side (the client is the slow part)."""
    with ThreadPoolExecutor(len(agents)) as pool:
        futures = {
            agent: pool.submit(run_agent, agent, cases, outdir / agent, wstest, timeout)
            for agent in agents
        }
        return {agent: future.result() for agent, future in futures.items()}


def run_agent(
    agent: str, cases: list[str], outdir: Path, wstest: Path, timeout: float
) -> list[Case]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", SERVERS[agent], "--port", str(port)], cwd=ROOT
    )
    try:
        wait_listening(port, process)
        spec = {
            "outdir": str(outdir),
            "servers": [{"agent": agent, "url": f"ws://127.0.0.1:{port}"}],
            "cases": cases,
            "exclude-cases": [],
            "exclude-agent-cases": {},
        }
        outdir.mkdir(parents=True, exist_ok=True)
        config = outdir / "fuzzingclient.json"
        config.write_text(json.dumps(spec, indent=2))
        subprocess.run(
            [str(wstest), "-m", "fuzzingclient", "-s", str(config)],
            cwd=outdir,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    index = json.loads((outdir / "index.json").read_text())
    return sorted(
        (
            Case(case_id, result["behavior"], result["behaviorClose"])
            for case_id, result in index[agent].items()
        ),
        key=lambda case: tuple(int(part) for part in case.id.split(".")),
    )


def table(results: dict[str, list[Case]]) -> str:
    """One row per group and agent: the count of each verdict."""
    lines = [
        "| group | server | cases | " + " | ".join(VERDICTS) + " |",
        "|---|---|--:|" + "--:|" * len(VERDICTS),
    ]
    groups = sorted({case.group for cases in results.values() for case in cases})
    totals = {agent: Counter[str]() for agent in results}
    for group in groups:
        for agent, cases in results.items():
            counts = Counter(case.verdict for case in cases if case.group == group)
            totals[agent].update(counts)
            lines.append(_row(str(group), agent, counts))
    for agent in results:
        lines.append(_row("**all**", agent, totals[agent]))
    return "\n".join(lines)


def _row(group: str, agent: str, counts: Counter[str]) -> str:
    cells = " | ".join(str(counts[verdict]) if counts[verdict] else "" for verdict in VERDICTS)
    return f"| {group} | {agent} | {sum(counts.values())} | {cells} |"


def exceptions(results: dict[str, list[Case]]) -> str:
    """Every case that is not plainly OK, by server."""
    lines = []
    for agent, cases in results.items():
        odd = [case for case in cases if case.verdict != "OK"]
        if odd:
            listed = ", ".join(f"{case.id} {case.verdict}" for case in odd)
            lines.append(f"- {agent}: {listed}")
        else:
            lines.append(f"- {agent}: every case OK")
    return "\n".join(lines)


def write_doc(path: Path, block: str) -> None:
    text = path.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{path}: no {BEGIN} ... {END} block to fill")
    path.write_text(pattern.sub(lambda _: f"{BEGIN}\n{block}\n{END}", text))


def versions(wstest: Path) -> str:
    from importlib.metadata import version

    out = subprocess.run(
        [str(wstest), "-a"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    suite = " ".join(line.strip() for line in out.stdout.splitlines() if line.strip())
    return f"{suite}; websockets {version('websockets')}; Python {sys.version.split()[0]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Autobahn TestSuite conformance run")
    parser.add_argument("--full", action="store_true", help="every group (else the CI subset)")
    parser.add_argument(
        "--agents", default=OURS, help=f"comma-separated: {OURS},{LIBRARY} (default: ours)"
    )
    parser.add_argument("--write", type=Path, help="fill the table block of this markdown file")
    parser.add_argument("--outdir", type=Path, help="keep the suite's reports here")
    parser.add_argument("--wstest", type=Path, default=WSTEST)
    parser.add_argument("--cases", help="comma-separated case patterns, instead of a preset")
    args = parser.parse_args(argv)
    agents = [agent.strip() for agent in args.agents.split(",") if agent.strip()]
    unknown = set(agents) - set(SERVERS)
    if unknown:
        parser.error(f"unknown agents: {', '.join(sorted(unknown))}")
    if not args.wstest.exists():
        parser.error(f"{args.wstest} is missing: `make conformance` installs the suite")
    cases = FULL if args.full else FAST
    if args.cases:
        cases = [case.strip() for case in args.cases.split(",") if case.strip()]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="autobahn-") as tmp:
        outdir = args.outdir or Path(tmp)
        results = run_suite(agents, cases, outdir, args.wstest, 7200 if args.full else 900)
    took = time.monotonic() - started
    summary = table(results)
    odd = exceptions(results)
    print(summary, odd, f"cases: {' '.join(cases)}; {took:.0f} s", sep="\n\n")
    if args.write:
        block = "\n\n".join(
            [
                f"Cases `{' '.join(cases)}`; {versions(args.wstest)}; "
                f"run {time.strftime('%Y-%m-%d', time.gmtime())}, {took:.0f} s.",
                summary,
                odd,
            ]
        )
        write_doc(args.write, block)
    ours = results.get(OURS, [])
    bad = [case for case in ours if case.verdict in ("FAILED", "NON-STRICT")]
    if bad:
        print(f"{OURS}: {len(bad)} case(s) FAILED or NON-STRICT", file=sys.stderr)
        return 1
    return 0
