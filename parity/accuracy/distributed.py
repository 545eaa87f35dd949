"""One evaluation spread over the processes of a launcher (torchrun, or
paddle.distributed.launch), ending in the one results file a single process
would write.

Each rank evaluates its own slice of the list (`parity.inputs.data.select`'s
disjoint interleaved shards: no padding, any number of processes) into a
partial results file of its own, `<results>.rank<K>of<N>` (the format of an
`eval --shard K/N` file), so `--resume` continues every rank exactly where it
stopped. When every rank is done, the ranks gather their records to rank 0
through torch.distributed (gloo on CPU, NCCL on GPU); rank 0 checks that
every image of the list is there exactly once, writes the one results file
(atomically) and the partial files are removed.

Ranks wait for each other only through the job's key-value store (a
torch.distributed TCPStore), never inside a collective that could hang: each
rank bumps a heartbeat counter every second from a thread, a waiting rank
fails the job when a peer's counter has not moved for `timeout_s` (killed,
hung or unreachable), and a rank that fails says so in the store, so the
others stop at once with its message. A collective runs only once every rank
has arrived at it, under the same timeout.

Where the ranks meet: torchrun's MASTER_ADDR:MASTER_PORT (its agent's store,
or one hosted by rank 0 when there is no agent); under
paddle.distributed.launch, trainer 0's endpoint (the first entry of
PADDLE_TRAINER_ENDPOINTS), which belongs to rank 0 and which nothing else
uses here (no Paddle collective is started).
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

from parity.core.exits import JobFailed
from parity.inputs.data import DataError

DEFAULT_TIMEOUT_S = 300.0
HEARTBEAT_S = 1.0
POLL_S = 0.2


@dataclass(frozen=True)
class Launch:
    """What a launcher told this process."""
    launcher: str  # 'torchrun' | 'paddle.distributed.launch'
    rank: int
    world: int
    local_rank: Optional[int]  # this process's GPU on its node
    host: str
    port: int
    agent_store: bool  # the launcher's agent hosts the store (torchrun), else rank 0 does
    run_id: str  # keeps the keys of two jobs (or two attempts of one) apart in a shared store


def _int_env(name: str) -> Optional[int]:
    v = os.environ.get(name)
    if v is None or not v.strip():
        return None
    try:
        return int(v.split(",")[0])
    except ValueError:
        raise DataError(None, f"environment variable {name}={v!r} is not an integer (set by the launcher?)") from None


def detect() -> Optional[Launch]:
    """The launcher this process runs under, or None for a plain process."""
    env = os.environ
    if env.get("RANK") is not None and env.get("WORLD_SIZE") is not None:
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not env.get(k)]
        if missing:
            raise DataError(None, f"RANK and WORLD_SIZE are set but {' and '.join(missing)} not: launch with torchrun "
                                  "(or set them), or unset RANK/WORLD_SIZE for a single process")
        run_id = f"{env.get('TORCHELASTIC_RUN_ID', 'job')}/{env.get('TORCHELASTIC_RESTART_COUNT', '0')}"
        return _checked(Launch("torchrun", _int_env("RANK"), _int_env("WORLD_SIZE"), _int_env("LOCAL_RANK"),
                               env["MASTER_ADDR"], _int_env("MASTER_PORT"),
                               env.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true", run_id))
    if env.get("PADDLE_TRAINER_ID") is not None and env.get("PADDLE_TRAINERS_NUM") is not None:
        endpoints = env.get("PADDLE_TRAINER_ENDPOINTS", "")
        first = endpoints.split(",")[0].strip()
        host, _, port = first.rpartition(":")
        if not host or not port.isdigit():
            raise DataError(None, f"PADDLE_TRAINER_ENDPOINTS={endpoints!r}: expected host:port,... "
                                  "(set by paddle.distributed.launch)")
        # The GPU the launcher chose for this process (--gpus 4,5,6,7 gives local rank 0 GPU 4).
        local = _int_env("FLAGS_selected_gpus")
        if local is None:
            local = _int_env("PADDLE_LOCAL_RANK")
        return _checked(Launch("paddle.distributed.launch", _int_env("PADDLE_TRAINER_ID"),
                               _int_env("PADDLE_TRAINERS_NUM"), local, host, int(port), False,
                               env.get("PADDLE_JOB_ID", "job")))
    return None


def _checked(launch: Launch) -> Launch:
    if launch.world < 1 or not 0 <= launch.rank < launch.world:
        raise DataError(None, f"{launch.launcher}: rank {launch.rank} of world size {launch.world} "
                              "(need 0 <= rank < world size)")
    return launch


def part_path(results: str, rank: int, world: int) -> str:
    """Rank K's partial results file beside the job's one results file."""
    return f"{results}.rank{rank}of{world}"


class Job:
    """The ranks of one launched evaluation: their store, heartbeats and
    process group. `with Job(...) as job:` ... an exception inside tells the
    other ranks (they stop with its message) before it propagates."""

    def __init__(self, launch: Launch, device: str = "cpu", timeout_s: float = DEFAULT_TIMEOUT_S):
        import datetime

        import torch.distributed as dist

        if timeout_s <= 0:
            raise DataError(None, f"--collective-timeout {timeout_s:g}: must be > 0 seconds")
        self.launch, self.rank, self.world, self.timeout_s = launch, launch.rank, launch.world, float(timeout_s)
        self.is_host = launch.rank == 0 and not launch.agent_store
        timeout = datetime.timedelta(seconds=timeout_s)
        where = f"{launch.host}:{launch.port}"
        try:
            base = dist.TCPStore(launch.host, launch.port, launch.world, self.is_host, timeout=timeout,
                                 wait_for_workers=False)
        except (RuntimeError, OSError) as e:  # torch's DistStoreError is a RuntimeError
            raise JobFailed(f"rank {self.rank}: cannot reach the job's store at {where} within {timeout_s:g} s "
                            f"({type(e).__name__}: {e})") from None
        self.store = dist.PrefixStore(f"genet-parity/{launch.run_id}/", base)
        self._base = base
        self._beat_error: Optional[BaseException] = None
        self._stop = threading.Event()
        self._beat_thread = threading.Thread(target=self._beat, name="genet-parity heartbeat", daemon=True)
        self._beat_thread.start()
        if device != "cpu":
            import torch

            torch.cuda.set_device(int(device.split(":")[1]))
        self.backend = "gloo" if device == "cpu" else "nccl"
        try:
            dist.init_process_group(self.backend, store=dist.PrefixStore("process-group/", self.store),
                                    rank=self.rank, world_size=self.world, timeout=timeout)
        except (RuntimeError, OSError) as e:
            self.fail(f"{type(e).__name__}: {e}")
            raise JobFailed(f"rank {self.rank}: the {self.backend} process group of {self.world} ranks did not form "
                            f"within {timeout_s:g} s ({e})") from None
        self.closed = False

    # ------------------------------------------------------------ liveness
    def _beat(self):
        key = f"beat/{self.rank}"
        while not self._stop.is_set():
            try:
                self.store.add(key, 1)
            except Exception as e:  # the store's host is gone: the main thread reports it at its next wait
                self._beat_error = e
                return
            self._stop.wait(HEARTBEAT_S)

    def fail(self, message: str):
        """Tell the other ranks that this one failed (best effort: the store may be gone)."""
        try:
            self.store.set(f"failed/{self.rank}", message.encode("utf-8", "replace"))
        except Exception:
            pass

    def _has(self, key: str) -> bool:
        return self.store.check([key])

    def wait(self, ready: Callable[[], bool], what: str):
        """Poll `ready()` until it holds; fail the job when a peer failed or
        has been silent for the timeout, or when the store is unreachable."""
        seen = {}
        while True:
            try:
                for k in range(self.world):
                    if k != self.rank and self._has(f"failed/{k}"):
                        message = self.store.get(f"failed/{k}").decode("utf-8", "replace")
                        raise JobFailed(f"rank {k} of {self.world} failed ({message}); this rank ({self.rank}) "
                                        "stops too (continue the job with --resume)")
                if ready():
                    return
                now = time.monotonic()
                for k in range(self.world):
                    if k == self.rank or self._has(f"closed/{k}"):
                        continue
                    beat = int(self.store.add(f"beat/{k}", 0))
                    if seen.get(k, (None,))[0] != beat:
                        seen[k] = (beat, now)
                    elif now - seen[k][1] > self.timeout_s:
                        raise JobFailed(f"rank {k} of {self.world} has been silent for {self.timeout_s:g} s (killed, "
                                        f"hung or unreachable) while this rank ({self.rank}) waited for {what}; "
                                        "continue the job with --resume")
            except JobFailed:
                raise
            except (RuntimeError, OSError) as e:
                raise JobFailed(f"rank {self.rank} lost the job's store at {self.launch.host}:{self.launch.port} "
                                f"while waiting for {what} ({type(e).__name__}: {e}); rank 0 (or the launcher) "
                                "has probably ended; continue the job with --resume") from None
            if self._beat_error is not None:
                raise JobFailed(f"rank {self.rank} lost the job's store ({self._beat_error})")
            time.sleep(POLL_S)

    def sync(self, name: str):
        """Wait until every rank has reached `name` (see `wait`)."""
        self.store.set(f"at/{name}/{self.rank}", b"1")
        self.wait(lambda: all(self._has(f"at/{name}/{k}") for k in range(self.world)), f"every rank at '{name}'")

    # ------------------------------------------------------------ collectives, each after a sync
    def gather(self, obj, name: str) -> Optional[list]:
        """Every rank's `obj` at rank 0 (None elsewhere)."""
        import torch.distributed as dist

        self.sync(name)
        out = [None] * self.world if self.rank == 0 else None
        self._collective(lambda: dist.gather_object(obj, out, dst=0), name)
        return out

    def broadcast(self, obj, name: str):
        """Rank 0's `obj` on every rank."""
        import torch.distributed as dist

        self.sync(name)
        box = [obj]
        self._collective(lambda: dist.broadcast_object_list(box, src=0), name)
        return box[0]

    def _collective(self, fn, name):
        try:
            fn()
        except (RuntimeError, OSError) as e:  # a peer died inside it; gloo/NCCL raise RuntimeError subclasses
            raise JobFailed(f"rank {self.rank}: the {self.backend} collective '{name}' failed "
                            f"({type(e).__name__}: {e}); continue the job with --resume") from None

    # ------------------------------------------------------------ the end
    def close(self):
        """Leave the job. Rank 0 hosting the store waits for the others to
        leave first, so that none loses the store on its way out."""
        import torch.distributed as dist

        if self.closed:
            return
        self.closed = True
        if self.is_host:
            self.wait(lambda: all(self._has(f"closed/{k}") for k in range(1, self.world)), "the other ranks to end")
        self._stop.set()
        self._beat_thread.join(timeout=5)
        try:
            self.store.set(f"closed/{self.rank}", b"1")
        except Exception:
            pass
        if dist.is_initialized():
            dist.destroy_process_group()

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if error is not None:
            self.fail(_describe(error))
            self._stop.set()
            try:
                import torch.distributed as dist

                if dist.is_initialized():
                    dist.destroy_process_group()
            except Exception:
                pass
            return False
        self.close()
        return False


def _describe(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (Ctrl-C or a signal)"
    return str(error) if isinstance(error, (DataError, JobFailed)) else f"{type(error).__name__}: {error}"


# ---------------------------------------------------------------- the results of a job
def combine(header: dict, parts: Sequence[Tuple[dict, List[dict]]], earlier: Sequence[dict] = (),
            expected_indices: Optional[Sequence[int]] = None) -> Tuple[dict, List[dict], List[dict]]:
    """(header, records, checks) of the whole job from every rank's partial
    file (header, records) plus `earlier` records (those of an earlier,
    unfinished run's results file). Refuses what would not equal a single
    run: ranks of different runs, an image twice or missing."""
    from parity.accuracy.results import RECORD_TYPES, identity_mismatch

    records, checks = {}, []
    for r in earlier:
        if r["type"] in RECORD_TYPES:
            records[r["index"]] = r
        elif r["type"] == "check":
            checks.append(r)
    for k, (h, recs) in enumerate(parts):
        bad = identity_mismatch(header, h)
        if bad:
            raise DataError(None, f"rank {k} evaluated a different run than rank 0 (differs in {', '.join(bad)}): "
                                  "every node must see the same weights, list and options")
        for r in recs:
            if r["type"] == "check":
                checks.append(dict(r, shard=h.get("shard")))
            elif r["type"] in RECORD_TYPES:
                if r["index"] in records:
                    raise DataError(None, f"image {r['path']} (index {r['index']}) came from two ranks")
                records[r["index"]] = r
    if expected_indices is not None:
        missing = sorted(set(expected_indices) - set(records))
        extra = sorted(set(records) - set(expected_indices))
        if missing or extra:
            raise DataError(None, f"the ranks' results do not cover the list exactly ({len(missing)} image(s) "
                                  f"missing, {len(extra)} not in it)")
    whole = {**header, "shard": None, "expected": len(records) if expected_indices is None else len(expected_indices)}
    return whole, [records[i] for i in sorted(records)], checks


def combine_throughput(per_rank: Sequence[dict]) -> dict:
    """The job's throughput record from every rank's (`RunTimes.summary`):
    images summed over ranks, the job's wall time the slowest rank's loop,
    each stage's seconds summed (so its images/s is per process)."""
    def rate(n, s):
        return n / s if s > 0 else None

    images = sum(t["images"] for t in per_rank)
    run_s = max(t["run_s"] for t in per_rank)
    out = {"images": images, "run_s": run_s, "images_per_s": rate(images, run_s), "processes": len(per_rank)}
    for key in ("models_s", "decode_wait_s", "check_s", "write_s"):
        out[key] = sum(t[key] for t in per_rank)
    out["models_images_per_s"] = rate(images, out["models_s"])
    stages = {}
    for name in per_rank[0]["stages"]:
        s = sum(t["stages"][name]["s"] for t in per_rank)
        if name == "decode":
            decoded = sum(t["stages"][name]["images"] for t in per_rank)
            stages[name] = {"s": s, "images": decoded, "images_per_s": rate(decoded, s),
                            "workers": per_rank[0]["stages"][name]["workers"],
                            "normalize_s": sum(t["stages"][name]["normalize_s"] for t in per_rank)}
        else:
            stages[name] = {"s": s, "images_per_s": rate(images, s)}
    out["stages"] = stages
    out["ranks"] = [{k: t[k] for k in ("images", "run_s", "images_per_s")} for t in per_rank]
    return out


def rank_device(device_arg: str, launch: Launch) -> str:
    """The device of this rank for --device `device_arg`: each rank on its own
    GPU, a plain `gpu` (or `cuda`) becoming gpu:LOCAL_RANK (under Paddle's
    launcher, FLAGS_selected_gpus); an explicit gpu:N is kept."""
    from parity.accuracy.runners import normalize_device

    device = normalize_device(device_arg)
    if (device_arg or "").strip().lower() in ("gpu", "cuda") and launch.local_rank is not None:
        return f"gpu:{launch.local_rank}"
    return device


def evaluate_job(job: Job, runners, dataset, samples, header: dict, results_path: str, resume: bool = False,
                 say: Callable[[str], None] = lambda line: None, **evaluate_kw) -> Optional[dict]:
    """`evaluate` of the whole list `samples` (header: the whole run's, as
    `make_header(..., shard=None, expected=len(samples))` gives it) by every
    rank of `job`; returns the summary at rank 0, None elsewhere.

    Resumption is exact: an unfinished results file at `results_path` (of a
    single process, with --resume) keeps its records and the ranks evaluate
    only the rest; each rank continues its own partial file."""
    from parity.accuracy.evaluate import RunTimes, evaluate
    from parity.accuracy.summary import summarize
    from parity.accuracy.results import (RECORD_TYPES, already_holds_a_run, identity_mismatch, read_results,
                                         write_results_file)
    from parity.inputs.data import select

    earlier = []
    if job.rank == 0 and os.path.exists(results_path) and os.path.getsize(results_path) > 0:
        if not resume:
            raise already_holds_a_run(results_path)
        old_header, earlier = read_results(results_path, repair=True)
        bad = identity_mismatch(old_header, header)
        if bad:
            raise DataError(results_path, f"cannot resume: it was written for a different run (differs in "
                                          f"{', '.join(bad)})")
        held = {r["index"]: r for r in earlier if r["type"] in RECORD_TYPES}
        if held:  # as a single process's --resume does: its images are still the files it evaluated
            from parity.accuracy.evaluate import check_resumed
            from parity.inputs.decode import Decoder

            with Decoder(header["arch"], dataset.abspath, workers=evaluate_kw.get("workers", 0),
                         batch_size=evaluate_kw.get("batch_size", 32)) as decoder:
                check_resumed(results_path, held, samples, dataset, decoder)
    if job.rank == 0 and resume:
        import glob

        other = sorted(p for p in glob.glob(glob.escape(results_path) + ".rank*of*")
                       if not p.endswith(f"of{job.world}"))
        if other:
            say(f"WARNING: {len(other)} partial file(s) of a job of another size are not used ({other[0]}, ...): "
                f"resume with that number of processes to continue them")
    done = job.broadcast(sorted(r["index"] for r in earlier if r.get("index") is not None), "plan")
    done = set(done)
    mine = [s for s in select(samples, None, (job.rank, job.world)) if s.index not in done]
    part = part_path(results_path, job.rank, job.world)
    part_header = {**header, "shard": [job.rank, job.world], "expected": len(mine)}
    if done:
        say(f"{len(done)} of {len(samples)} images already in {results_path}; this rank evaluates {len(mine)}")
    if done and resume and os.path.exists(part) and os.path.getsize(part) > 0:
        _drop_records(part, done)
    times = evaluate_kw.pop("times", None) or RunTimes()
    evaluate(runners, dataset, mine, part_header, part, resume=resume, times=times, **evaluate_kw)
    _, records = read_results(part)
    gathered = job.gather((part_header, records, times.summary(list(runners))), "evaluated")
    summary = None
    if job.rank == 0:
        whole, records, checks = combine(header, [(h, r) for h, r, _ in gathered], earlier,
                                         [s.index for s in samples])
        write_results_file(results_path, whole, checks, records)
        summary = summarize(whole, records + checks)
        summary["throughput"] = combine_throughput([t for _, _, t in gathered])
    job.sync("written")
    os.remove(part)
    return summary


def _drop_records(part: str, done: set):
    """Rewrite a partial file without the images the job's results file
    already holds (a job killed after writing that file, before removing its
    partial files): the same run's records by the identity check, counted
    once, from the results file."""
    from parity.accuracy.results import read_results, write_results_file

    old = read_results(part, repair=True)
    if not any(r.get("index") in done for r in old.records):
        return
    write_results_file(part, old.header, [], [r for r in old.records if r.get("index") not in done])
