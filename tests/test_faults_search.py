"""Search faults: a cluster whose nodes are smaller than this machine, an address where no cluster answers,
journal lines with missing or wrong fields (issue 12, "Search on a cluster")."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from effnet.cli import main
from effnet.search import RunnerConfig, ray_available
from effnet.search.journal import Journal
from effnet.search.runner import check_reachable, fit_threads


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # free once the socket closes: nothing listens there


@pytest.mark.parametrize(
    ("threads", "workers", "nodes", "expected"),
    [
        (None, 2, [1.0, 1.0], 1),
        (None, 1, [1.0, 1.0], 1),
        (None, 2, [4.0, 4.0], 4),
        (None, 4, [2.0], 1),
        (2, 1, [2.0, 1.0], 2),
    ],
)
def test_threads_per_trial_fit_the_clusters_nodes(threads, workers, nodes, expected):
    config = RunnerConfig(backend="ray", workers=workers, threads=threads, address="127.0.0.1:1")
    assert fit_threads(config, nodes) == expected


def test_more_threads_than_any_node_has_is_refused_instead_of_waiting_forever():
    with pytest.raises(ValueError, match="largest Ray node's 1 CPU"):
        fit_threads(RunnerConfig(backend="ray", threads=2, address="127.0.0.1:1"), [1.0, 1.0])


def test_no_cluster_at_address_is_a_clear_error(tmp_path, capsys):
    port = _closed_port()
    with pytest.raises(ValueError, match=f"no Ray cluster answers at 127.0.0.1:{port}"):
        check_reachable(f"127.0.0.1:{port}", timeout=5)
    if not ray_available():
        return
    code = main(
        [
            "search",
            "--backend",
            "ray",
            "--address",
            f"127.0.0.1:{port}",
            "--epochs",
            "1",
            "--num-train",
            "32",
            "--num-val",
            "16",
            "--max-candidates",
            "500",
            "--out",
            str(tmp_path / "s"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("effnet search:")]  # besides the trial bar
    assert len(errors) == 1 and "no Ray cluster answers" in errors[0] and "Traceback" not in err, err


def test_journal_lines_with_missing_or_wrong_fields_count_as_not_finished(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl", "abc")
    journal.record({"trial_id": "good", "status": "ok", "metrics": {"final_val_acc": 0.5}})
    with open(tmp_path / "journal.jsonl", "a") as handle:
        for entry in (
            {"kind": "trial", "status": "ok"},
            {"kind": "trial", "trial_id": 3, "status": "ok"},
            {"kind": "trial", "trial_id": "x", "status": "maybe"},
            {"kind": "trial", "trial_id": "y", "status": "ok", "metrics": [1]},
        ):
            handle.write(json.dumps(entry) + "\n")
    assert list(Journal(tmp_path / "journal.jsonl", "abc").finished()) == ["good"]


@pytest.mark.slow
@pytest.mark.skipif(
    not ray_available() or shutil.which("ray", path=os.path.dirname(sys.executable)) is None,
    reason="needs the ray extra",
)
def test_search_on_a_cluster_of_one_cpu_nodes_finishes(tmp_path):
    """A real 2-node Ray cluster on 127.0.0.1 (a head and a second node, 1 CPU each) and two workers: the default
    --threads (this machine's cores per worker) asked for more CPUs than a node has, and the search waited at 0
    trials forever."""
    port = _closed_port()
    ray_bin = shutil.which("ray", path=os.path.dirname(sys.executable))
    temp_dir = tempfile.mkdtemp(prefix="effray")  # short: Ray's socket paths must stay under 107 characters
    # Head and driver agree on no token auth (a token file in ~/.ray would otherwise switch the driver to it).
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    head = subprocess.Popen(
        [
            ray_bin,
            "start",
            "--head",
            "--block",
            "--num-cpus",
            "1",
            "--port",
            str(port),
            "--node-ip-address",
            "127.0.0.1",
            "--include-dashboard",
            "false",
            "--temp-dir",
            temp_dir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    nodes = [head]
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                check_reachable(f"127.0.0.1:{port}", timeout=2)
                break
            except ValueError:
                time.sleep(1)
        nodes.append(
            subprocess.Popen(
                [
                    ray_bin,
                    "start",
                    "--address",
                    f"127.0.0.1:{port}",
                    "--block",
                    "--num-cpus",
                    "1",
                    "--node-ip-address",
                    "127.0.0.1",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        )
        assert _wait_for_nodes(f"127.0.0.1:{port}", 2, env), "the second Ray node did not join"
        command = [
            sys.executable,
            "-m",
            "effnet.cli",
            "search",
            "--backend",
            "ray",
            "--address",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--alpha",
            "1",
            "1.2",
            "--beta",
            "1",
            "1",
            "--gamma",
            "1",
            "1.2",
            "--step",
            "0.2",
            "--tolerance",
            "0.5",
            "--no-base",
            "--epochs",
            "1",
            "--num-train",
            "32",
            "--num-val",
            "16",
            "--batch-size",
            "16",
            "--base-resolution",
            "32",
            "--out",
            str(tmp_path / "s"),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=500, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        lines = (tmp_path / "s" / "journal.jsonl").read_text().splitlines()
        trials = [json.loads(line) for line in lines if '"trial"' in line]
        assert trials and all(entry["threads"] == 1 and entry["status"] == "ok" for entry in trials)
    finally:
        for node in reversed(nodes):  # the nodes this test started (each in its own session), nothing else
            os.killpg(node.pid, signal.SIGTERM)
            node.wait(timeout=60)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _wait_for_nodes(address: str, count: int, env: dict[str, str], timeout: float = 120) -> bool:
    """Poll the cluster (from a separate driver process) until `count` nodes are alive."""
    probe = (
        "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
        "print(sum(node['Alive'] for node in ray.nodes()))"
    )
    deadline = time.time() + timeout
    while time.time() < deadline:
        done = subprocess.run(
            [sys.executable, "-c", probe, address], capture_output=True, text=True, env=env, timeout=120
        )
        if done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == [str(count)]:
            return True
        time.sleep(2)
    return False


# ------------------------------------------------------------------------- issue 21: partial results, locks
TINY_SEARCH = [
    "search",
    "--alpha",
    "1",
    "1.2",
    "--beta",
    "1",
    "1.2",
    "--gamma",
    "1",
    "1.2",
    "--step",
    "0.2",
    "--tolerance",
    "0.2",
    "--base-resolution",
    "32",
    "--num-train",
    "32",
    "--num-val",
    "16",
    "--epochs",
    "1",
    "--batch-size",
    "16",
    "--backend",
    "sequential",
    "--threads",
    "1",
]
DISK_FULL = ("base", "a1.200-b1.200-g1.000")


def _disk_full_trial(task):
    """The real trial, except that two of the four fail like a trial writing onto a full disk."""
    import errno

    from effnet.search import train_trial

    if task.trial_id in DISK_FULL:
        raise OSError(errno.ENOSPC, "No space left on device", task.run_dir)
    return train_trial(task)


def test_failed_trials_make_the_search_partial_and_retry_failed_counts_what_reran(tmp_path, capsys, monkeypatch):
    import effnet.search.grid_search as engine  # `effnet search` imports its engine when it runs
    from effnet.search import run_search

    out = str(tmp_path / "s")
    monkeypatch.setattr(engine, "run_search", lambda config, **kw: run_search(config, trial_fn=_disk_full_trial, **kw))
    assert main([*TINY_SEARCH, "--out", out]) == 1  # not 0: two of four trials failed
    captured = capsys.readouterr()
    partial = [line for line in captured.err.splitlines() if "partial result" in line]
    assert len(partial) == 1 and all(trial in partial[0] for trial in DISK_FULL) and "--retry-failed" in partial[0]
    assert "2 model(s) failed" in partial[0]
    assert "best:" not in captured.out  # a winner, if any, is "best of the 2 that finished"
    monkeypatch.undo()
    assert main([*TINY_SEARCH, "--out", out, "--retry-failed", "--json"]) == 0
    err = capsys.readouterr().err
    assert "2 trials trained now, 2 taken from the journal" in err and "partial result" not in err
    assert not (tmp_path / "s" / ".lock").exists()


def test_a_second_search_into_the_same_out_is_refused_and_a_dead_ones_lock_is_taken_over(tmp_path, capsys):
    from effnet.search.journal import OutFolderLock

    out = tmp_path / "s"
    with OutFolderLock(out):
        assert main([*TINY_SEARCH, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "in use by another `effnet search`" in err[0] and f"pid {os.getpid()}" in err[0]
    assert not (out / ".lock").exists()  # removed on release
    (out / ".lock").write_text("999999999")  # left by a SIGKILLed search: no process holds its lock
    with OutFolderLock(out) as lock:
        assert lock.path.read_text() == str(os.getpid())
    assert not list(out.glob("journal*"))  # the refused search wrote nothing
