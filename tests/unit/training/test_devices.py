"""The GPU pool, with fake device lists: concurrent jobs never share a device."""

import multiprocessing as mp
import time

from flops_fit.training.devices import claim_device, release_devices


def _job(lock_dir, devices, hold_s, queue):
    got = claim_device(devices, lock_dir, wait_s=30)
    queue.put((got, time.monotonic()))
    time.sleep(hold_s)


def test_claims_are_exclusive_within_a_process(tmp_path):
    assert claim_device([0, 1], tmp_path) == 0
    assert claim_device([0, 1], tmp_path) == 1  # 0 is held, even within this process
    assert claim_device([0, 1], tmp_path) is None
    release_devices()
    assert claim_device([0, 1], tmp_path) == 0
    release_devices()


def test_concurrent_jobs_get_distinct_devices(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_job, args=(str(tmp_path), [0, 1, 2, 3], 2.0, queue))
             for _ in range(4)]
    for p in procs:
        p.start()
    got = [queue.get(timeout=60)[0] for _ in procs]
    for p in procs:
        p.join()
    assert sorted(got) == [0, 1, 2, 3]


def test_a_finished_or_killed_job_frees_its_device(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    first = ctx.Process(target=_job, args=(str(tmp_path), [0], 60.0, queue))
    first.start()
    assert queue.get(timeout=60)[0] == 0
    assert claim_device([0], tmp_path) is None  # busy
    first.kill()  # SIGKILL: the OS drops its lock
    first.join()
    assert claim_device([0], tmp_path, wait_s=10) == 0
    release_devices()


def test_more_jobs_than_devices_wait_for_a_free_one(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_job, args=(str(tmp_path), [0, 1], 1.5, queue))
             for _ in range(3)]
    for p in procs:
        p.start()
    got = sorted((queue.get(timeout=60) for _ in procs), key=lambda x: x[1])
    for p in procs:
        p.join()
    assert sorted(d for d, _ in got[:2]) == [0, 1]
    assert got[2][0] in (0, 1) and got[2][1] - got[0][1] > 1.0  # waited for a release
