"""Dynamic batching: concurrent requests' images are stacked into one forward pass on one model instance."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import torch

T = TypeVar("T")


@dataclass
class _Item:
    tensor: torch.Tensor
    future: asyncio.Future[torch.Tensor]


class DynamicBatcher:
    """Collects up to `max_batch` images, waiting at most `max_wait_s` after the first, and runs them together.

    The wait only happens while more images are known to be on the way (requests inside `expecting()`, still
    being read or decoded): a lone request runs at once instead of paying the wait for company that never comes.

    Forward passes run on `streams` model threads (one by default), so the event loop stays free to accept and
    decode the next requests while a batch runs; those then form the next batch, taken as soon as a model thread
    is free. With two streams, two batches run at once on one model instance, each on its own thread with its own
    intra-op threads: independent passes keep both cores busy without the per-operator synchronisation of
    intra-op threads, which stalls whenever one of them is preempted. `max_batch=1` is one-at-a-time serving.
    """

    def __init__(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor],
        max_batch: int,
        max_wait_s: float,
        on_batch: Callable[[int, float], None] | None = None,
        streams: int = 1,
    ) -> None:
        if max_batch < 1 or max_wait_s < 0 or streams < 1:
            raise ValueError(
                f"max_batch and streams must be >= 1 and max_wait >= 0, got {max_batch}, {streams} and {max_wait_s}"
            )
        self.forward = forward  # must be safe to call from `streams` threads at once (onnxruntime and eval torch are)
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.on_batch = on_batch  # called with (batch size, seconds) after every forward pass
        self.streams = streams
        self._executor = ThreadPoolExecutor(max_workers=streams, thread_name_prefix="effnet-model")
        self._queue: asyncio.Queue[_Item] | None = None
        self._free: asyncio.Semaphore | None = None  # model threads not running anything
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._expected = 0  # requests that will submit images soon; touched only on the event loop

    @contextlib.contextmanager
    def expecting(self) -> Iterator[None]:
        """Mark a request that is preparing images to submit, so that a forming batch waits for it."""
        self._expected += 1
        try:
            yield
        finally:
            self._expected -= 1

    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        self._queue = asyncio.Queue()
        self._free = asyncio.Semaphore(self.streams)
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop the loop; requests still queued get an error instead of hanging."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await asyncio.gather(*self._running)  # passes under way finish and answer their requests
        while self._queue is not None and not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.future.done():
                item.future.set_exception(RuntimeError("the server is shutting down"))
        self._executor.shutdown(wait=True)

    async def submit(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Logits (one row per tensor) for preprocessed (3, H, W) images, batched with other requests'."""
        if self._queue is None:
            raise RuntimeError("DynamicBatcher.start() has not been called")
        loop = asyncio.get_running_loop()
        items = [_Item(tensor, loop.create_future()) for tensor in tensors]
        for item in items:
            self._queue.put_nowait(item)
        return list(await asyncio.gather(*(item.future for item in items)))

    async def run_on_model_thread(self, function: Callable[[], T]) -> T:
        """Run `function` when a model thread is free, in place of a batch (work such as CAM that needs the model)."""
        assert self._free is not None, "DynamicBatcher.start() has not been called"
        async with self._free:
            return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    async def _collect(self, first: _Item) -> list[_Item]:
        """`first` and what joins it: everything queued, and (only while more requests are on the way) what
        arrives within max_wait, up to max_batch."""
        assert self._queue is not None
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            if not self._queue.empty():  # images that queued while the last batch ran join at once
                batch.append(self._queue.get_nowait())
                continue
            if self._expected == 0:  # nobody else is on the way
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    def _run(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        start = time.perf_counter()
        logits = self.forward(torch.stack(tensors))  # stacked here, on the model thread, not on the event loop
        if self.on_batch is not None:
            self.on_batch(len(tensors), time.perf_counter() - start)
        return logits

    async def _loop(self) -> None:
        assert self._queue is not None and self._free is not None
        while True:
            first = await self._queue.get()
            await self._free.acquire()  # images queued meanwhile join this batch in _collect
            live = [item for item in await self._collect(first) if not item.future.done()]  # skip clients gone away
            if not live:
                self._free.release()
                continue
            task = asyncio.get_running_loop().create_task(self._dispatch(live))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _dispatch(self, live: list[_Item]) -> None:
        """One forward pass on a model thread; its rows (or its error) go to the waiting requests."""
        assert self._free is not None
        try:
            loop = asyncio.get_running_loop()
            logits = await loop.run_in_executor(self._executor, self._run, [item.tensor for item in live])
        except Exception as err:  # noqa: BLE001 - the requests get the error; the loop keeps serving
            for item in live:
                if not item.future.done():
                    item.future.set_exception(err)
            return
        finally:
            self._free.release()
        for item, row in zip(live, logits, strict=True):
            if not item.future.done():
                item.future.set_result(row)
