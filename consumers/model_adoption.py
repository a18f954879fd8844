"""Adopt a published deep model's item table into one partition's online embeddings.

The trainer follows each promotion with one ``adopt-model`` control message per ``clicks``
partition (``streamrec.control``). When ingest reaches it in partition order,
``ModelAdopter.adopt``:

1. learns the pending micro-batch first, so the point of adoption is fixed in the
   partition's event sequence, not wherever a micro-batch happened to be cut;
2. refuses a version not newer than the one the partition holds (``already_adopted`` for
   the same, ``stale_version`` for an older one: a replayed old announcement never moves
   the embeddings back), then reads the model's item ids and vectors from
   ``root/version`` of its own model store, checked against the manifest there, which the
   message pins by sha256 (``streamrec.export.item_table.load_published_item_table``: numpy only,
   ingest stays torch-free; a folder outside the store is ``outside_store``);
3. calls ``OnlineUserEmbeddings.adopt_item_table``: users move so their scores are kept,
   and the vector size becomes the deep model's (``current_dim``).

The message's value is the trainer's ``models`` announcement (``streamrec.control``), signed
when a control secret is set (ingest checks that before calling here). A model that cannot
be read (missing folder, checksum mismatch, malformed request, NaN in its table) is
skipped with one log line and counted in ``outcomes``; the partition's events go on and
nothing is dead-lettered. Either way a snapshot is made due, so the outcome is recorded.

Crash-exactness: a re-run after a restart (the transaction holding the adoption never
committed) re-reads the same control message, so the adoption repeats at the same point
from the same verified bytes. That needs the version's folder to still be in the store:
the store must retain recent versions (it deletes none today).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Callable

import numpy as np

from streamrec.consumers.partition_models import PartitionModels
from streamrec.export.item_table import ModelRejected, load_published_item_table
from streamrec.control import AdoptModelRequest, BadControl, version_number

log = logging.getLogger(__name__)

ItemTableLoader = Callable[[AdoptModelRequest], tuple[list[str], np.ndarray]]


class CachedItemTables:
    """Loads the item table a request names from the store at ``root``, keeping the latest.

    Every partition of an instance receives the same request: the table is read and
    verified once, not once per partition. Adoption never writes to the arrays.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self._key: tuple[str, str, str | None] | None = None
        self._table: tuple[list[str], np.ndarray] | None = None

    def __call__(self, request: AdoptModelRequest) -> tuple[list[str], np.ndarray]:
        key = (request.version, request.manifest_sha256, request.path)
        if key != self._key or self._table is None:
            self._table = load_published_item_table(self.root, request.version,
                                                    request.manifest_sha256, request.path)
            self._key = key
        return self._table


class ModelAdopter:
    """Applies ``adopt-model`` control messages to partition models; counts outcomes.

    ``outcomes`` keys: ``adopted``, ``already_adopted`` (a duplicate message for the
    version the partition holds), ``stale_version`` (older than it), ``bad_request``, and
    the ``ModelRejected`` reasons (``outside_store``, ``missing_file``, ``checksum_mismatch``,
    ``bad_manifest``, ``non_finite``, ``too_large``, ...). ``store_root`` is the model store
    the default loader reads (``Settings.model_store``).
    """

    def __init__(self, load_table: ItemTableLoader | None = None, ridge: float = 1e-2,
                 store_root: str = "./model-store") -> None:
        self.load_table = load_table if load_table is not None else CachedItemTables(store_root)
        self.ridge = ridge
        self.outcomes: Counter[str] = Counter()

    def adopt(self, models: PartitionModels, value: bytes | None) -> tuple[list[str], bool]:
        """(users the flushed micro-batch learned, whether the item table was adopted)."""
        learned = models.flush()
        # Whatever happens below, the next snapshot stands here: a restore starting from it
        # never meets this message again, so its outcome cannot change after a commit.
        models.make_snapshot_due()
        try:
            request = AdoptModelRequest.decode(value)
        except BadControl as exc:
            self._skip(models, "bad_request", "?", str(exc))
            return learned, False
        if request.version == models.adopted_version:
            self.outcomes["already_adopted"] += 1  # a re-sent message: adopting twice would drift
            return learned, False
        held = version_number(models.adopted_version)
        if held is not None and (version_number(request.version) or 0) <= held:
            self._skip(models, "stale_version", request.version,
                       f"the partition holds the newer {models.adopted_version}")
            return learned, False
        try:
            item_ids, vectors = self.load_table(request)
        except ModelRejected as exc:
            self._skip(models, exc.reason, request.version,
                       f"{exc.detail} at {str(request.path)[:200]}")
            return learned, False
        report = models.blend.embeddings.adopt_item_table(item_ids, vectors, self.ridge)
        models.adopted_version = request.version
        self.outcomes["adopted"] += 1
        log.info("partition %d adopted the item table of model %s (dim %d)", models.partition,
                 request.version, models.blend.embeddings.current_dim, extra=report)
        return learned, True

    def _skip(self, models: PartitionModels, reason: str, version: str, detail: str) -> None:
        self.outcomes[reason] += 1
        log.error("partition %d did not adopt model %s (%s): %s; online embeddings stay in "
                  "their current space", models.partition, version, reason, detail)
