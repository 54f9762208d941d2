"""`rtctl bench v2v`: latency and loss of the V2V bus against raw pyzmq, like for like, plus a 100k-frame fuzz.

Every car is its own OS process (multiprocessing, spawn). Children talk to the parent only in msgpack over a
ZeroMQ DEALER/ROUTER pair: they report their PUB endpoints, get everyone's, and run the same timetable on the
shared monotonic clock. Each timetable phase is one case (raw or bus, CURVE off or on), phases interleave the
cases repeat by repeat so drifts in machine load hit all of them alike. In each phase every car publishes the
same state payload (with its monotonic send stamp) at rate_hz and receives from all others through one SUB per
peer (`rtctl.v2v.transport`, the same sockets for raw and bus). Raw = pyzmq + plain msgpack unpack; bus =
V2VNode (limited unpack, validation, id binding, order and age checks, neighbour table). Latency = receive
(after the poll's batch is handled) minus send stamp; loss = sequence gaps among messages sent after warm-up.
"""
from __future__ import annotations

import math
import multiprocessing
import tempfile
import time
from pathlib import Path

import msgpack
import numpy as np
import zmq
from tqdm import tqdm

from rtctl.bench.common import spread
from rtctl.report.runfolder import peak_rss_mb, write_rows
from rtctl.v2v.config import V2VConfig
from rtctl.v2v.fuzz import run_fuzz
from rtctl.v2v.keys import load_keys, make_keys
from rtctl.v2v.node import V2VNode
from rtctl.v2v.schema import StateMsg
from rtctl.v2v.transport import endpoint_of, pub_socket, start_authenticator, sub_socket

CASES = ("raw", "bus", "raw_curve", "bus_curve")
GROUPS = ((2, 200.0), (8, 50.0))  # (cars, publish rate per car)
HWM = 100


def run(out_dir: Path, quick: bool) -> list[dict]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timing = {"repeats": 3, "warm_s": 0.25 if quick else 0.5, "measure_s": 0.75 if quick else 5.0,
              "drain_s": 0.15 if quick else 0.2}
    rows, latencies = [], {}
    with tempfile.TemporaryDirectory() as keys_dir:
        make_keys(keys_dir, [f"car{i}" for i in range(max(n for n, _ in GROUPS))])
        for agents, rate in tqdm(GROUPS, desc="bench v2v", unit="group"):
            group_rows, lat = run_group(agents, rate, keys_dir, **timing)
            rows += group_rows
            latencies.update({(r["case"], agents): v for r, v in zip(group_rows, lat)})
    n_fuzz = 20_000 if quick else 100_000
    with tqdm(total=n_fuzz, desc="fuzz", unit="frame") as bar:
        fuzz = run_fuzz(n_fuzz, seed=0, progress=lambda n: bar.update(n - bar.n))
    rows.append({"case": "fuzz", "agents": 1, "rate_hz": None, "p50_us": None, "p99_us": None, "loss": None,
                 "frames": fuzz["frames"], "accepted": fuzz["accepted"],
                 "disagreements_with_reference": len(fuzz["mismatches"]),
                 "invalid_in_table": 0 if fuzz["table_ok"] and not fuzz["mismatches"] else 1,
                 "harness_us_per_frame": round(fuzz["us_per_frame"], 1), "drops": fuzz["drops"]})
    write_rows(out_dir / "results.json", rows)
    _plot(out_dir / "plots" / "v2v_latency.png", latencies)
    return rows


# -- parent -------------------------------------------------------------------------------------------------
def run_group(agents: int, rate_hz: float, keys_dir: str, repeats: int, warm_s: float, measure_s: float,
              drain_s: float) -> tuple[list[dict], list[np.ndarray]]:
    phases = [case for _ in range(repeats) for case in CASES]
    phase_s = warm_s + measure_s + drain_s
    plan = {"rate_hz": rate_hz, "cars": agents, "keys_dir": keys_dir, "cases": list(CASES), "phases": phases,
            "warm_s": warm_s, "measure_s": measure_s, "phase_s": phase_s}
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind("tcp://127.0.0.1:*")
    spawn = multiprocessing.get_context("spawn")
    procs = [spawn.Process(target=car_process, args=(endpoint_of(router), i), daemon=True) for i in range(agents)]
    try:
        for p in procs:
            p.start()
        who = {i: ident for i, (ident, _) in _gather(router, agents, 120, "started").items()}
        for i, ident in who.items():
            router.send_multipart([ident, msgpack.packb({**plan, "id": f"car{i}"})])
        endpoints = {i: r["endpoints"] for i, (_, r) in _gather(router, agents, 60, "bound").items()}
        t0 = time.monotonic_ns() + int(1.5e9)  # connect and CURVE handshakes settle before phase 0
        for i, ident in who.items():
            peers = {c: {f"car{j}": endpoints[j][c] for j in endpoints if j != i} for c in CASES}
            router.send_multipart([ident, msgpack.packb({"t0_ns": t0, "peers": peers})])
        finished = _gather(router, agents, 1.5 + len(phases) * phase_s + 60, "finished")
        results = {i: r for i, (_, r) in finished.items()}
    finally:
        for p in procs:
            if p.pid is None:  # never started
                continue
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        router.close(linger=0)
        ctx.term()
    return _rows(agents, rate_hz, phases, results)


def _gather(router: zmq.Socket, n: int, timeout_s: float, what: str) -> dict[int, tuple[bytes, dict]]:
    """One msgpack reply from each of n cars -> {index: (ROUTER identity, reply)}; a child's error is raised."""
    got = {}
    deadline = time.monotonic() + timeout_s
    while len(got) < n:
        if not router.poll(max(1, int((deadline - time.monotonic()) * 1000))):
            raise TimeoutError(f"only {len(got)} of {n} car processes {what}")
        ident, payload = router.recv_multipart()
        reply = msgpack.unpackb(payload, strict_map_key=False)
        if "error" in reply:
            raise RuntimeError(f"car process {reply['index']} failed: {reply['error']}")
        got[reply["index"]] = (ident, reply)
    return got


def _rows(agents: int, rate_hz: float, phases: list[str], results: dict[int, dict]) -> tuple[list, list]:
    per_case: dict[str, list[dict]] = {c: [] for c in CASES}
    for k, case in enumerate(phases):
        parts = [results[i]["phases"][k] for i in results]
        lat = np.concatenate([np.asarray(p["lat_us"], dtype=float) for p in parts])
        expected = sum(p["sent"] for p in parts) * (agents - 1)
        received = sum(sum(p["recv"].values()) for p in parts)
        per_case[case].append({"lat": lat, "p50": float(np.percentile(lat, 50)) if lat.size else float("nan"),
                               "p99": float(np.percentile(lat, 99)) if lat.size else float("nan"),
                               "expected": expected, "received": received})
    rss = max(r["peak_rss_mb"] for r in results.values())
    rows, lats = [], []
    for case, reps in per_case.items():
        p50, p99 = spread([r["p50"] for r in reps]), spread([r["p99"] for r in reps])
        expected, received = sum(r["expected"] for r in reps), sum(r["received"] for r in reps)
        row = {"case": case, "agents": agents, "rate_hz": rate_hz, "p50_us": round(p50["median"], 1),
               "p99_us": round(p99["median"], 1), "loss": (expected - received) / expected if expected else None,
               "p50_us_min": round(p50["min"], 1), "p50_us_max": round(p50["max"], 1),
               "p99_us_min": round(p99["min"], 1), "p99_us_max": round(p99["max"], 1),
               "repeats": len(reps), "messages_expected": expected, "messages_received": received,
               "lost_per_repeat": [r["expected"] - r["received"] for r in reps],
               "peak_rss_mb_per_car": round(rss, 1)}
        if case.startswith("bus"):
            raw = per_case[case.replace("bus", "raw")]
            ratios = spread([b["p50"] / r["p50"] for b, r in zip(reps, raw)])  # paired within each repeat
            row.update({"p50_ratio_to_raw": round(ratios["median"], 3),
                        "p50_ratio_min": round(ratios["min"], 3), "p50_ratio_max": round(ratios["max"], 3),
                        "goal_p50_ratio_le_1_3": ratios["median"] <= 1.3})
            if agents == 8:
                row["goal_zero_loss"] = received == expected
        rows.append(row)
        lats.append(np.concatenate([r["lat"] for r in reps]))
    return rows, lats


def _plot(path: Path, latencies: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(GROUPS), figsize=(6 * len(GROUPS), 4), squeeze=False)
    for ax, (agents, rate) in zip(axes[0], GROUPS):
        for case in CASES:
            lat = latencies.get((case, agents))
            if lat is not None and lat.size:
                xs = np.sort(lat)
                ax.plot(xs, np.linspace(0, 1, xs.size), label=case)
        ax.set(xscale="log", xlabel="one-way latency (µs)", ylabel="CDF", title=f"{agents} cars × {rate:g} Hz")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- child: one car -----------------------------------------------------------------------------------------
class RawLink:
    """Raw pyzmq: the same sockets and payload as the bus, plain msgpack, no checks."""

    def __init__(self, car: str, keys_dir: str | None) -> None:
        self.car, self.seq = car, 0
        self.ctx = zmq.Context()
        self.keys = load_keys(keys_dir, car) if keys_dir else None
        self.auth = start_authenticator(self.ctx, self.keys) if self.keys else None
        self.pub = pub_socket(self.ctx, "tcp://127.0.0.1:*", self.keys, HWM)
        self.endpoint = endpoint_of(self.pub)
        self.poller = zmq.Poller()
        self.subs: list[zmq.Socket] = []

    def add_peer(self, peer: str, endpoint: str) -> None:
        sock = sub_socket(self.ctx, endpoint, self.keys, self.keys.peer_key(peer) if self.keys else None, HWM)
        self.subs.append(sock)
        self.poller.register(sock, zmq.POLLIN)

    def send(self) -> int:
        t = time.monotonic_ns()
        self.seq += 1
        self.pub.send(msgpack.packb({"v": 1, "type": "state", "id": self.car, "seq": self.seq, "t_send_ns": t,
                                     "t_meas_ns": t, "pose": _pose(self.seq), "vel": [1.5, 0.0],
                                     "acc": [0.1, 0.0], "intent": 1, "error_bound": 0.05}), zmq.NOBLOCK)
        return t

    def receive(self, timeout_ms: int) -> list[tuple[str, int, int]]:
        out = []
        for sock, _ in self.poller.poll(timeout_ms):
            while True:
                try:
                    m = msgpack.unpackb(sock.recv(zmq.NOBLOCK))
                except zmq.Again:
                    break
                out.append((m["id"], m["seq"], m["t_send_ns"]))
        return out

    def close(self) -> None:
        for s in self.subs:
            s.close(linger=0)
        self.pub.close(linger=0)
        if self.auth:
            self.auth.stop()
        self.ctx.term()


class BusLink:
    def __init__(self, car: str, keys_dir: str | None) -> None:
        self.node = V2VNode(V2VConfig(id=car, keys_dir=keys_dir, hwm=HWM))
        self.endpoint = self.node.endpoint
        self.seq = 0  # payload only; the node keeps the wire seq

    def add_peer(self, peer: str, endpoint: str) -> None:
        self.node.add_peer(peer, endpoint)

    def send(self) -> int:
        self.seq += 1
        return self.node.publish_state(_pose(self.seq), (1.5, 0.0), (0.1, 0.0), 1, 0.05).t_send_ns

    def receive(self, timeout_ms: int) -> list[tuple[str, int, int]]:
        return [(m.id, m.seq, m.t_send_ns) for m in self.node.poll(timeout_ms) if type(m) is StateMsg]

    def close(self) -> None:
        self.node.close()


def _pose(seq: int) -> list[float]:
    return [0.01 * (seq % 1000), 0.5, 0.0]


def car_process(control: str, index: int) -> None:
    """One car: report endpoints, connect to peers, run every phase of the timetable, report measurements."""
    ctx = zmq.Context()
    ctl = ctx.socket(zmq.DEALER)
    ctl.setsockopt(zmq.LINGER, 0)
    ctl.connect(control)
    links: dict[str, RawLink | BusLink] = {}
    try:
        ctl.send(msgpack.packb({"index": index, "ready": True}))
        plan = msgpack.unpackb(ctl.recv())
        for case in plan["cases"]:
            kind = RawLink if case.startswith("raw") else BusLink
            links[case] = kind(plan["id"], plan["keys_dir"] if case.endswith("curve") else None)
        ctl.send(msgpack.packb({"index": index, "endpoints": {c: link.endpoint for c, link in links.items()}}))
        go = msgpack.unpackb(ctl.recv())
        for case, peers in go["peers"].items():
            for peer, endpoint in peers.items():
                links[case].add_peer(peer, endpoint)
        phase_ns = int(plan["phase_s"] * 1e9)
        measured = [run_phase(links[case], go["t0_ns"] + k * phase_ns, plan, index)
                    for k, case in enumerate(plan["phases"])]
        ctl.send(msgpack.packb({"index": index, "phases": measured, "peak_rss_mb": peak_rss_mb()}))
    except Exception as err:  # the parent reports it; a child traceback alone would be lost
        ctl.send(msgpack.packb({"index": index, "error": f"{type(err).__name__}: {err}"}))
    finally:
        for link in links.values():
            link.close()
        ctl.close(linger=0)
        ctx.term()


def run_phase(link: RawLink | BusLink, start_ns: int, plan: dict, index: int) -> dict:
    """Publish on the timetable, receive in between; measure the messages sent inside the measured window.

    Cars are staggered by period/cars (real cars are not phase-locked, and 8 processes sending at one instant
    would measure their fight for 2 cores). The loop always waits inside the poll, so arrivals are seen at once.
    """
    period = 1e9 / plan["rate_hz"]
    first = start_ns + index * period / plan["cars"]
    n_send = int((plan["warm_s"] + plan["measure_s"]) * plan["rate_hz"])
    lo = start_ns + int(plan["warm_s"] * 1e9)
    hi = lo + int(plan["measure_s"] * 1e9)
    end = start_ns + int(plan["phase_s"] * 1e9)
    sent, lat, got = 0, [], {}
    i = 0
    while True:
        now = time.monotonic_ns()
        if i < n_send and now >= first + i * period:
            t = link.send()
            sent += lo <= t < hi
            i += 1
            continue
        if i >= n_send and now >= end:
            break
        wait_ms = ((first + i * period if i < n_send else end) - now) / 1e6
        batch = link.receive(max(1, math.ceil(wait_ms)))
        t_recv = time.monotonic_ns()
        for sender, seq, t_send in batch:
            if lo <= t_send < hi:
                lat.append((t_recv - t_send) / 1e3)
                got.setdefault(sender, set()).add(seq)
    return {"sent": sent, "recv": {s: len(seqs) for s, seqs in got.items()}, "lat_us": lat}
