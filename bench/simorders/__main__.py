"""`python -m bench.simorders [--before-ref REF | --before-src DIR] [--resting 0,100,300,1000]`

What one signed ``/exchange`` post costs the simulator when the account already has
K resting orders on the coin (a grid or market-making bot). In-process: a seeded
``SimWorld`` (no clock ticks), one funded account with K resting ETH orders (half
bids well below the mid, half asks well above), then ``--posts`` posts through
``Exchange.handle`` (what REST and WebSocket ``post`` call), each timed alone;
signing (the SDK's ``sign_l1_action``) happens outside the timing. Scenarios:

- ``order+cancel``: a Gtc order with a cloid that rests, then its cancel by oid;
- ``mix``: a Gtc order with a cloid, a ``batchModify`` of it by oid (new price, same
  cloid), its cancel by cloid, and an IOC that takes ~$14 from the synthetic book
  (sides alternate: the position opens and closes, which reaches the reduce-only
  sweep).

Each (code, K, scenario) runs in a child process whose PYTHONPATH puts that code's
``src`` first: this checkout, and with ``--before-ref``/``--before-src`` another one
(e.g. main before a change), alternating round by round. The children also digest
every answer, order update, fill and trade: the table says whether the two codes
answered the same. ``--profile K`` prints cProfile's top functions for this checkout
at K resting orders instead.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
START = 1_800_000_000_000
ETH = 1  # asset index of ETH in the default listing
KEY = "0x" + "5a" * 32
BATCH = 50  # resting orders placed per setup post
WARMUP = 20  # posts run before the timed ones
Body = dict[str, Any]


# -- the child: one code, one K, one scenario ---------------------------------------
class Bench:
    """A world, a funded account with ``resting`` orders, and a signer for its posts."""

    def __init__(self, resting: int, seed: int) -> None:
        import eth_account
        from eth_account.signers.local import LocalAccount

        from hlgateway.simulator.world import SimWorld

        self.world = SimWorld(seed, START, trade_rate=0.0)
        self.world.step(START + 1_000)
        self.account: LocalAccount = eth_account.Account.from_key(KEY)
        self.address = self.account.address.lower()
        self.world.accounts.fund(self.address, Decimal(10_000_000), self.world.now_ms)
        self.nonce = self.world.now_ms
        self.mid = Decimal(str(self.world.market.mark_px("ETH"))).quantize(Decimal("0.1"))
        self.digest = hashlib.sha256()
        self.cloids = 0
        prices = [self.mid * Decimal("0.7") - Decimal("0.1") * i for i in range(resting // 2)]
        prices += [
            self.mid * Decimal("1.3") + Decimal("0.1") * i for i in range(resting - resting // 2)
        ]
        wires = [self.wire(px, "0.01", buy=px < self.mid, cloid=self.cloid()) for px in prices]
        for at in range(0, len(wires), BATCH):
            answer = self.post(
                {"type": "order", "orders": wires[at : at + BATCH], "grouping": "na"}
            )
            statuses = answer["response"]["data"]["statuses"]
            assert all("resting" in s for s in statuses), statuses

    def cloid(self) -> str:
        self.cloids += 1
        return f"0x{self.cloids:032x}"

    @staticmethod
    def wire(
        px: Decimal, sz: str, *, buy: bool, cloid: str | None = None, tif: str = "Gtc"
    ) -> Body:
        from hyperliquid.utils.signing import float_to_wire

        wire: Body = {
            "a": ETH,
            "b": buy,
            "p": float_to_wire(float(px.quantize(Decimal("0.1")))),
            "s": sz,
            "r": False,
            "t": {"limit": {"tif": tif}},
        }
        if cloid is not None:
            wire["c"] = cloid
        return wire

    def sign(self, action: Body) -> Body:
        from hyperliquid.utils.signing import sign_l1_action

        self.nonce += 1
        signature = sign_l1_action(self.account, action, None, self.nonce, None, False)
        return {"action": action, "nonce": self.nonce, "signature": signature}

    def post(self, action: Body, times: list[float] | None = None) -> Body:
        """Sign (untimed) and handle (timed into ``times``) one post; its answer."""
        body = self.sign(action)
        now = self.world.now_ms
        handle = self.world.exchange.handle
        started = time.perf_counter()
        result = handle(body, now)
        elapsed = time.perf_counter() - started
        if times is not None:
            times.append(elapsed * 1e6)
        answer: Body = result.body
        assert result.status == 200 and answer["status"] == "ok", answer
        self.digest.update(json.dumps(answer, sort_keys=True).encode())
        self.digest.update(repr((result.activities, result.trades)).encode())
        return answer

    def order_cancel(self, n: int, times: list[float] | None) -> None:
        px = self.mid * Decimal("0.8") - Decimal("0.1") * (n % 100)
        answer = self.post(
            {"type": "order", "orders": [self.wire(px, "0.01", buy=True)], "grouping": "na"},
            times,
        )
        oid = answer["response"]["data"]["statuses"][0]["resting"]["oid"]
        self.post({"type": "cancel", "cancels": [{"a": ETH, "o": oid}]}, times)

    def mix(self, n: int, times: list[float] | None) -> None:
        buy = n % 2 == 0
        px = self.mid * (Decimal("0.8") if buy else Decimal("1.2")) + Decimal("0.1") * (n % 100)
        cloid = self.cloid()
        order = {"type": "order", "orders": [self.wire(px, "0.01", buy=buy, cloid=cloid)]}
        answer = self.post({**order, "grouping": "na"}, times)
        oid = answer["response"]["data"]["statuses"][0]["resting"]["oid"]
        moved = self.wire(px - Decimal("0.5"), "0.01", buy=buy, cloid=cloid)
        self.post({"type": "batchModify", "modifies": [{"oid": oid, "order": moved}]}, times)
        self.post({"type": "cancelByCloid", "cancels": [{"asset": ETH, "cloid": cloid}]}, times)
        taker = self.mid * (Decimal("1.01") if buy else Decimal("0.99"))
        ioc = self.wire(taker.quantize(Decimal("0.1")), "0.004", buy=buy, tif="Ioc")
        answer = self.post({"type": "order", "orders": [ioc], "grouping": "na"}, times)
        assert "filled" in answer["response"]["data"]["statuses"][0], answer

    def run(self, scenario: str, posts: int, times: list[float] | None) -> None:
        step = self.order_cancel if scenario == "order+cancel" else self.mix
        per = 2 if scenario == "order+cancel" else 4
        for n in range(max(1, posts // per)):
            step(n, times)


def child(args: argparse.Namespace) -> int:
    import hlgateway

    bench = Bench(int(args.resting), args.seed)
    bench.run(args.scenario, WARMUP, None)
    times: list[float] = []
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(bench.run, args.scenario, args.posts, times)
        stats = pstats.Stats(profile)
        stats.sort_stats("tottime").print_stats(18)
        stats.sort_stats("cumulative").print_stats(30)
        return 0
    bench.run(args.scenario, args.posts, times)
    live = len(bench.world.accounts.wallet(bench.address).live_orders)  # type: ignore[union-attr]
    out = {"code": hlgateway.__file__, "times": times, "digest": bench.digest.hexdigest()}
    print(json.dumps({**out, "live": live}))
    return 0


# -- the parent: codes side by side ---------------------------------------------------
def spawn(src: Path, resting: int, scenario: str, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{ROOT}"}
    command = [sys.executable, "-m", "bench.simorders", "--child", "--resting", str(resting)]
    command += ["--scenario", scenario, "--posts", str(args.posts), "--seed", str(args.seed)]
    out = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    assert Path(result["code"]).resolve().is_relative_to(src.resolve()), (result["code"], src)
    assert result["live"] == resting, result["live"]  # the setup's orders are all still there
    return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(results: dict[tuple[str, str, int], list[dict[str, Any]]], codes: list[str]) -> str:
    before = codes[1] if len(codes) > 1 else None
    head = ["scenario", "resting K"]
    for code in codes:
        head += [f"{code} p50 us", f"{code} p99 us"]
    if before is not None:
        head += ["p50 before/after", "p99 before/after", "same answers"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    keys = sorted({(s, k) for _, s, k in results}, key=lambda sk: (sk[0] != "order+cancel", sk[1]))
    for scenario, resting in keys:
        row = [scenario, str(resting)]
        stats: dict[str, tuple[float, float]] = {}
        for code in codes:
            times = [t for run in results[code, scenario, resting] for t in run["times"]]
            stats[code] = (statistics.median(times), percentile(times, 0.99))
            row += [f"{stats[code][0]:.0f}", f"{stats[code][1]:.0f}"]
        if before is not None:
            after = codes[0]
            row += [
                f"{stats[before][0] / stats[after][0]:.2f}",
                f"{stats[before][1] / stats[after][1]:.2f}",
                "yes"
                if {r["digest"] for c in codes for r in results[c, scenario, resting]}.__len__()
                == 1
                else "NO",
            ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simorders", description=__doc__)
    parser.add_argument("--resting", default="0,100,300,1000", help="K values, comma-separated")
    parser.add_argument("--posts", type=int, default=400, help="timed posts per child")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenarios", default="order+cancel,mix")
    parser.add_argument("--before-ref", help="a git ref of this repository to compare")
    parser.add_argument("--before-src", help="another checkout's src directory to compare")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--profile", type=int, metavar="K", help="cProfile this checkout at K")
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scenario", default="order+cancel", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    if args.profile is not None:
        args.resting, args.child = args.profile, True
        args.scenario = args.scenarios.split(",")[0]
        return child(args)
    from bench.table import machine, write_section

    codes: dict[str, Path] = {"after": ROOT / "src"}
    if args.before_ref:
        from bench.fanout.run import export_ref

        src, sha = export_ref(args.before_ref)
        codes[f"before ({sha})"] = src
    elif args.before_src:
        codes["before"] = Path(args.before_src)
    started, load = time.time(), os.getloadavg()
    scenarios = args.scenarios.split(",")
    ks = [int(k) for k in args.resting.split(",")]
    results: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for _ in range(args.rounds):
        for scenario in scenarios:
            for k in ks:
                for name, src in codes.items():
                    run = spawn(src, k, scenario, args)
                    results.setdefault((name, scenario, k), []).append(run)
                    print(f"{name} {scenario} K={k}: p50 {statistics.median(run['times']):.0f} us")
    command = "python -m bench.simorders " + " ".join(argv if argv is not None else sys.argv[1:])
    body = "\n".join(
        [
            f"### Simulator /exchange posts against K resting orders (`{command.strip()}`)",
            "",
            f"machine: {machine()}; load average {load[0]:.2f} at the start, "
            f"{os.getloadavg()[0]:.2f} at the end; {time.time() - started:.0f} s. "
            f"{args.posts} timed posts per (code, K, scenario) and round, {args.rounds} rounds "
            "pooled; per-post time of `Exchange.handle` (signature recovery included, "
            "signing not); bench/simorders/__main__.py.",
            "",
            table(results, list(codes)),
        ]
    )
    print(body)
    if not args.no_docs:
        write_section(command.strip(), body)
    same = all(
        len({r["digest"] for c in codes for r in results[c, s, k]}) == 1
        for s in scenarios
        for k in ks
    )
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
