"""The demo's trainer in its own process, as the trainer service runs beside the consumers.

A thread in the demo's interpreter competes with the stream for the GIL: on a quiet 2-core
machine a run started at event 20,000 served only from event 60,000. Here one worker
process (``spawn``: a fresh interpreter, no state forked from the stream) runs the same
``Trainer.train``, one run at a time, and writes the model version into the demo's model
store on disk. Only plain data crosses the pipe, never a pickled object:

- parent -> worker, once: the setup as JSON (trainer configuration, store root, topic,
  click bounds); then per run: the ``clicks`` records read from the bus, as bytes
  (``encode_job``), which the worker decodes with ``build_window`` as the service does;
- worker -> parent: the outcome as JSON (the ``models`` message, metrics, timings, reason,
  the thread count it trained with) or the error that ended the run.

The model itself goes only through the store, where the scorer's follower checks it.
"""

from __future__ import annotations

import json
import multiprocessing
import struct
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Sequence

from streamrec.consumers.train_outcome import TrainingOutcome
from streamrec.events import ClickBounds
from streamrec.records import Record

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from streamrec.consumers.train import TrainerConfig

# One record: partition, offset, broker timestamp, key / value lengths (-1: None), headers.
_RECORD = struct.Struct("<iqqiiH")
_HEADER = struct.Struct("<HI")
_JOIN_TIMEOUT_S = 5.0  # the worker has nothing to flush: the store is written before it replies


class TrainerProcessError(RuntimeError):
    """The worker sent something that is not an outcome, or died without answering."""


@dataclass
class RunOutcome(TrainingOutcome):
    """What one run in the worker did: the ``TrainingOutcome``, or the error that ended it."""

    torch_threads: int | None = None  # what the worker's torch trained with
    error: str | None = None  # the exception that ended the run, if one did


def encode_job(records: Sequence[Record], offsets: dict[int, tuple[int, int]],
               current: dict[str, Any] | None) -> bytes:
    """One run's input: a JSON header line (offsets, current ``models`` message), records."""
    header = json.dumps({"offsets": {str(p): list(r) for p, r in offsets.items()},
                         "current": current, "records": len(records)}).encode()
    parts = [struct.pack("<I", len(header)), header]
    for r in records:
        key, value = r.key, r.value
        parts.append(_RECORD.pack(r.partition, r.offset, r.timestamp_ms,
                                  -1 if key is None else len(key),
                                  -1 if value is None else len(value), len(r.headers)))
        parts.extend(part for part in (key, value) if part is not None)
        for name, data in r.headers:
            encoded = name.encode()
            parts += [_HEADER.pack(len(encoded), len(data)), encoded, data]
    return b"".join(parts)


def decode_job(payload: bytes, topic: str
               ) -> tuple[list[Record], dict[int, tuple[int, int]], dict[str, Any] | None]:
    """The inverse of ``encode_job``; raises ``ValueError`` on anything that does not fit."""
    view = memoryview(payload)
    try:
        (size,) = struct.unpack_from("<I", view, 0)
        header = json.loads(bytes(view[4:4 + size]))
        position = 4 + size
        records: list[Record] = []
        for _ in range(int(header["records"])):
            partition, offset, ts, key_len, value_len, n_headers = _RECORD.unpack_from(
                view, position)
            position += _RECORD.size
            key, position = _take(view, position, key_len)
            value, position = _take(view, position, value_len)
            headers = []
            for _ in range(n_headers):
                name_len, data_len = _HEADER.unpack_from(view, position)
                position += _HEADER.size
                name, position = _take(view, position, name_len)
                data, position = _take(view, position, data_len)
                headers.append(((name or b"").decode(), data or b""))
            records.append(Record(topic, partition, offset, key, value, ts, tuple(headers)))
        if position != len(view):
            raise ValueError(f"{len(view) - position} bytes after the last record")
        offsets = {int(p): (int(r[0]), int(r[1])) for p, r in header["offsets"].items()}
    except (struct.error, KeyError, TypeError, IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed training job: {exc!r}") from exc
    return records, offsets, header["current"]


def _take(view: memoryview, position: int, length: int) -> tuple[bytes | None, int]:
    if length < 0:
        return None, position
    if position + length > len(view):
        raise ValueError("record runs past the end of the job")
    return bytes(view[position:position + length]), position + length


class TrainerProcess:
    """One worker process that trains one window at a time; ``submit`` then ``result``."""

    def __init__(self, config: TrainerConfig, store_root: str, topic: str,
                 bounds: ClickBounds) -> None:
        """Start the worker now, so its imports (torch: seconds) overlap the stream."""
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe(duplex=True)
        self._process: BaseProcess = context.Process(
            target=_serve, args=(child,), name="streamrec-demo-trainer", daemon=True)
        self._process.start()
        child.close()  # the worker holds its end: a dead worker then reads as EOF here
        self._conn.send_bytes(json.dumps({"config": asdict(config), "store_root": store_root,
                                          "topic": topic, "bounds": asdict(bounds)}).encode())
        self._running = False

    @property
    def busy(self) -> bool:
        return self._running

    def submit(self, records: Sequence[Record], offsets: dict[int, tuple[int, int]],
               current: dict[str, Any] | None) -> None:
        if self._running:
            raise RuntimeError("one training run at a time")
        self._running = True
        try:
            self._conn.send_bytes(encode_job(records, offsets, current))
        except OSError:  # the worker is gone: ``result`` reports it, the stream goes on
            self._conn.close()

    def done(self) -> bool:
        return self._running and (self._conn.closed or self._conn.poll())

    def result(self) -> RunOutcome:
        """The running job's outcome, waiting for it; a dead worker is an error outcome."""
        if not self._running:
            raise RuntimeError("no training run submitted")
        self._running = False
        try:
            if self._conn.closed:
                raise EOFError("the pipe to the worker broke")
            reply = json.loads(self._conn.recv_bytes())
            return RunOutcome(**reply)
        except (EOFError, OSError) as exc:
            self._process.join(1.0)
            code = self._process.exitcode
            return RunOutcome(False, "trainer_process_died",
                              error=f"worker exited ({code}) without an outcome: {exc!r}")
        except (ValueError, TypeError) as exc:
            raise TrainerProcessError(f"unreadable outcome from the worker: {exc!r}") from exc

    def close(self) -> None:
        """Let the worker finish (end of input); stop it if it does not within a while."""
        wait = 1.0 if self._running else _JOIN_TIMEOUT_S  # a run in flight is abandoned
        if not self._conn.closed:
            self._conn.close()
        self._process.join(wait)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5.0)


def _serve(conn: Connection) -> None:
    """The worker: read the setup, then train each job until the parent closes the pipe."""
    import torch

    from streamrec.consumers.train import Trainer, TrainerConfig
    from streamrec.consumers.train_window import build_window
    from streamrec.export.store import ModelStore

    try:
        setup = json.loads(conn.recv_bytes())
    except EOFError:
        return
    config = TrainerConfig(**setup["config"])
    bounds = ClickBounds(**setup["bounds"])
    topic = setup["topic"]
    # Before any work: torch's pool is sized once, and the other core is the stream's.
    torch.set_num_threads(config.threads)
    torch.set_num_interop_threads(1)
    trainer = Trainer(config, ModelStore(setup["store_root"]), on_epoch=None)
    while True:
        try:
            job = conn.recv_bytes()
        except EOFError:
            return
        try:
            records, offsets, current_message = decode_job(job, topic)
            window = build_window(records, topic, offsets, bounds.max_event_bytes, bounds)
            current = trainer.load_current(current_message) if current_message else None
            outcome = trainer.train(window, current)
            reply = RunOutcome(**asdict(outcome), torch_threads=torch.get_num_threads())
        except Exception as exc:  # noqa: BLE001 - a failed run is reported; the stream goes on
            reply = RunOutcome(False, "training_failed", error=repr(exc)[:500],
                               torch_threads=torch.get_num_threads())
        conn.send_bytes(json.dumps(asdict(reply), default=str).encode())
