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

    The model runs on one dedicated thread, so forward passes never overlap (one model instance, no
    oversubscription of the cores) and the event loop stays free to accept and decode the next requests while a
    batch runs; those then form the next batch. `max_batch=1` is one-at-a-time serving.
    """

    def __init__(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor],
        max_batch: int,
        max_wait_s: float,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait >= 0, got {max_batch} and {max_wait_s}")
        self.forward = forward
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.on_batch = on_batch  # called with (batch size, seconds) after every forward pass
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="effnet-model")
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task[None] | None = None
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
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop the loop; requests still queued get an error instead of hanging."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
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

    async def run_exclusive(self, function: Callable[[], T]) -> T:
        """Run `function` on the model thread, between batches (for work such as CAM that needs the model)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    async def _collect(self) -> list[_Item]:
        assert self._queue is not None
        batch = [await self._queue.get()]
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
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            live = [item for item in batch if not item.future.done()]  # a client that went away is skipped
            if not live:
                continue
            try:
                logits = await loop.run_in_executor(self._executor, self._run, [item.tensor for item in live])
            except Exception as err:  # noqa: BLE001 - the requests get the error; the loop keeps serving
                for item in live:
                    if not item.future.done():
                        item.future.set_exception(err)
                continue
            for item, row in zip(live, logits, strict=True):
                if not item.future.done():
                    item.future.set_result(row)
