"""`kill -9` of an evaluation running the fast runners with 2 decoding
workers: no process of it survives (the workers and multiprocessing's
resource tracker would otherwise hold its pipes open, so a caller waiting on
its output hung), and the next start removes the temporary folder it left."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from parity.inputs.sample_images import bundled_photos


def children(pid: int):
    """Live processes whose parent is `pid` (from /proc)."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(name))
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_leaves_no_process_and_the_next_start_removes_the_temporary_folder(tmp_path):
    img = tmp_path / "img"
    img.mkdir()
    lines = []
    photos = bundled_photos()
    for i in range(120):  # enough to be still running when killed
        name = f"{i:03d}.png"
        shutil.copy(photos[i % len(photos)], img / name)
        lines.append(f"{name} {i % 1000}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch))
    log = open(tmp_path / "eval.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "parity.commands.cli", "eval", "--seeded", "--arch", "small",
                             "--data", str(img), "--list", str(tmp_path / "list.txt"), "--workers", "2",
                             "--batch-size", "2", "--threads", "1", "--results", str(tmp_path / "r.jsonl")],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        # Running: its predictor's temporary folder exists, and the decoding workers are at work.
        folders = wait_for(lambda: [n for n in os.listdir(scratch) if n.startswith("genet_predictor_")], 240,
                           "the Paddle predictor's temporary folder")
        pids = wait_for(lambda: (lambda c: c if len(c) >= 2 else None)(children(proc.pid)), 240,
                        "the decoding workers")
        wait_for(lambda: (tmp_path / "r.jsonl").exists() and (tmp_path / "r.jsonl").stat().st_size > 0, 240,
                 "the first records")
        pids = children(proc.pid)
        assert proc.poll() is None, (tmp_path / "eval.log").read_text()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        wait_for(lambda: not any(alive(p) for p in pids), 30,
                 f"the processes of the killed evaluation to end ({pids})")
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert [n for n in os.listdir(scratch) if n in folders] == folders  # SIGKILL removed nothing
    # The next start of any command removes the folders of owners that are dead.
    subprocess.run([sys.executable, "-m", "parity.commands.cli", "mapping", "small"], env=env, check=True,
                   stdout=subprocess.DEVNULL, timeout=120)
    assert not [n for n in os.listdir(scratch) if n.startswith("genet_predictor_")]


def test_a_folder_of_a_live_owner_is_kept(tmp_path):
    from converters.files.atomic import remove_stale_temporaries

    live = tmp_path / f"genet_predictor_pid{os.getppid()}_abc"
    dead_pid = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_pid.wait()
    dead = tmp_path / f"genet_predictor_pid{dead_pid.pid}_abc"
    other = tmp_path / "genet_not_ours"
    for folder in (live, dead, other):
        folder.mkdir()
    assert remove_stale_temporaries(str(tmp_path)) == [str(dead)]
    assert live.is_dir() and other.is_dir() and not dead.exists()


def test_a_temporary_folder_is_named_for_its_owner_and_removed_on_the_way_out(tmp_path, monkeypatch):
    """The benchmark's work folders: named as the stale cleanup recognises
    (so a `kill -9` leaves nothing for long), removed after the block, also
    when it raises."""
    import tempfile

    from converters.files.atomic import _OWNED, temporary_folder

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(RuntimeError), temporary_folder("genet_bench_") as work:
        (tmp_path / os.path.basename(work) / "x").write_text("x")
        assert os.path.dirname(work) == str(tmp_path)
        assert int(_OWNED.match(os.path.basename(work)).group(1)) == os.getpid()
        raise RuntimeError("a failing section")
    assert os.listdir(tmp_path) == []
