"""Run `genet-convert` on many hostile files, measuring each case on its own.

Starting torch costs seconds, so one worker process runs several cases: for
each it resets the kernel's peak-RSS counter (/proc/self/clear_refs), sends
fds 1 and 2 to a file, calls `converters.cli.main` (what the `genet-convert`
script runs) under an interval timer, and records the exit code, time, peak
RSS and what the destination folder holds. The worker runs under an address
space cap (RLIMIT_AS). A case that kills the worker (a signal) or hangs past
the timer is recorded against that case by the driver, which starts a new
worker for the cases after it.

    python -m tests.fuzz_worker worker CASES.json RESULTS.jsonl TIMEOUT
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AS_HEADROOM = 2 << 30  # address space beyond the worker's own after its imports


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class _Timeout(BaseException):
    pass


def _alarm(signum, frame):
    raise _Timeout


def worker(cases_path: str, results_path: str, timeout: float) -> None:
    import resource

    import numpy
    import torch

    import converters.cli as cli

    del numpy, torch  # imported before measuring, as genet-convert would
    from tests.hostile_files import build_cases, remove_source

    resource.setrlimit(resource.RLIMIT_AS, (_status_kb("VmSize") * 1024 + AS_HEADROOM, resource.RLIM_INFINITY))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file-size limit then fails writes with EFBIG, like a full disk
    signal.signal(signal.SIGALRM, _alarm)
    with open(cases_path) as f:
        job = json.load(f)
    known = {c.name: c for c in build_cases(job["folder"])}
    cases = [known[name] for name in job["names"]]
    results = open(results_path, "a", buffering=1)
    saved = os.dup(1), os.dup(2)
    for c in cases:
        made = time.perf_counter()
        if c.make:
            c.make()  # written just before the case and deleted after it: not timed, not measured
        made = time.perf_counter() - made
        case = c.to_json()
        results.write(json.dumps({"start": case["name"]}) + "\n")
        rss_before = _status_kb("VmRSS")
        log = tempfile.TemporaryFile()
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        per_case_peak = _reset_peak()
        fsize = resource.getrlimit(resource.RLIMIT_FSIZE)
        if case.get("fsize_limit"):
            resource.setrlimit(resource.RLIMIT_FSIZE, (case["fsize_limit"], fsize[1]))
        start = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            code = cli.main([case["src"], case["dst"]] + case["args"])
        except SystemExit as e:
            code = e.code
        except _Timeout:
            code = "timeout"
        except BaseException as e:  # noqa: BLE001 - recorded, judged by the test
            code = f"raised {type(e).__name__}: {e}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            seconds = time.perf_counter() - start
            resource.setrlimit(resource.RLIMIT_FSIZE, fsize)
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
        if c.make:
            remove_source(c)
        log.seek(0)
        output = log.read().decode("utf-8", "replace")
        results.write(json.dumps({
            "name": case["name"], "code": code, "seconds": seconds, "peak_kb": _status_kb("VmHWM"),
            "rss_before_kb": rss_before, "make_seconds": made,
            "per_case_peak": per_case_peak, "output": output[-2000:],
            "dst_listing": _listing(case["dst"])}) + "\n")
    results.close()


def _read_results(path: str):
    done, started = {}, None
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:  # the worker died while writing this line
                    continue
                if "start" in rec:
                    started = rec["start"]
                else:
                    done[rec["name"]] = rec
                    started = None
    return done, started


def genet_convert() -> List[str]:
    """The installed genet-convert script beside this Python, else the module."""
    script = os.path.join(os.path.dirname(sys.executable), "genet-convert")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "converters.cli"]


def _listing(dst: str):
    folder = os.path.dirname(dst)
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else None


class _OwnProcess:
    """One case as its own genet-convert process (exit status and rusage of its own)."""

    def __init__(self, case, folder: str, env):
        from tests.hostile_files import remove_source

        self.case, self.remove = case, remove_source
        if case.make:
            case.make()
        self.log = tempfile.TemporaryFile(dir=folder)
        self.start = time.perf_counter()
        self.proc = subprocess.Popen(genet_convert() + [case.src, case.dst] + case.args, cwd=ROOT, env=env,
                                     stdout=self.log, stderr=self.log)

    def poll(self, timeout: float):
        pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
        seconds = time.perf_counter() - self.start
        if pid == 0 and seconds <= timeout + 20:
            return None
        if pid == 0:
            self.proc.kill()
            pid, status, usage = os.wait4(self.proc.pid, 0)
            code = "hang"
        else:
            rc = os.waitstatus_to_exitcode(status)
            code = f"signal {-rc}" if rc < 0 else rc
        self.proc.returncode = 0  # reaped here; keep Popen from waiting again
        if self.case.make:
            self.remove(self.case)
        self.log.seek(0)
        output = self.log.read().decode("utf-8", "replace")[-2000:]
        self.log.close()
        return {"name": self.case.name, "code": code, "seconds": seconds, "peak_kb": usage.ru_maxrss,
                "output": output, "dst_listing": _listing(self.case.dst), "own_process": True}


def run_cases(cases, folder: str, workers: int = 2, timeout: float = 10.0, own_process=()) -> Dict[str, dict]:
    """Outcome of every case (`hostile_files.Case`s of `build_cases(folder)`),
    by name: the worker's record, or `code` 'signal N' / 'hang' when the case
    killed or stalled its worker. Cases named in `own_process` run as their
    own genet-convert process instead, beside the workers."""
    # A fixed mmap threshold makes glibc return every large block at free(),
    # so one case's memory never inflates the next case's peak.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    pooled = [c.to_json() for c in cases if c.name not in own_process]
    chunks = [pooled[i::workers] for i in range(workers)]
    procs = [{"todo": list(chunk), "results": os.path.join(folder, f"results{i}.jsonl"), "proc": None,
              "file": os.path.join(folder, f"cases{i}.json"), "last": time.time(), "seen": 0}
             for i, chunk in enumerate(chunks)]
    outcomes: Dict[str, dict] = {}

    def launch(p):
        with open(p["file"], "w") as f:
            json.dump({"folder": folder, "names": [c["name"] for c in p["todo"]]}, f)
        p["proc"] = subprocess.Popen([sys.executable, "-m", "tests.fuzz_worker", "worker", p["file"], p["results"],
                                      str(timeout)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        p["last"] = time.time()

    for p in procs:
        if p["todo"]:
            launch(p)
    singles = [_OwnProcess(c, folder, env) for c in cases if c.name in own_process]
    while any(p["proc"] is not None for p in procs) or singles:
        time.sleep(0.05)
        for single in list(singles):
            done = single.poll(timeout)
            if done is not None:
                outcomes[done["name"]] = done
                singles.remove(single)
        for p in procs:
            proc = p["proc"]
            if proc is None:
                continue
            done, started = _read_results(p["results"])
            if len(done) + (started is not None) != p["seen"]:
                p["seen"], p["last"] = len(done) + (started is not None), time.time()
            rc = proc.poll()
            stalled = rc is None and time.time() - p["last"] > timeout + 20
            if rc is None and not stalled:
                continue
            if stalled:
                proc.kill()
                proc.wait()
            err = proc.stderr.read().decode("utf-8", "replace")[-2000:]
            proc.stderr.close()
            outcomes.update(done)
            p["todo"] = [c for c in p["todo"] if c["name"] not in outcomes]
            if started is not None and p["todo"] and p["todo"][0]["name"] == started:
                code = "hang" if stalled else (f"signal {-rc}" if rc < 0 else f"worker exit {rc}")
                outcomes[started] = {"name": started, "code": code, "seconds": None, "peak_kb": None,
                                     "output": err, "dst_listing": None}
                p["todo"] = p["todo"][1:]
            elif rc not in (0, None) and p["todo"]:
                raise RuntimeError(f"fuzz worker failed outside any case (exit {rc}): {err}")
            p["proc"] = None
            if p["todo"]:
                launch(p)
    return outcomes


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        worker(sys.argv[2], sys.argv[3], float(sys.argv[4]))
