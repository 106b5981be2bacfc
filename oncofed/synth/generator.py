"""The row generator: seeded streams of patients per centre, one CSV row per primary tumour.

Determinism: every value comes from `random.Random.random()` (see `draws`), so output depends
only on the Mersenne Twister stream. A centre's patients are cut into fixed chunks of
`CHUNK_PATIENTS`, each with its own seed derived from (run seed, centre, chunk): chunks can be
generated in parallel processes and concatenated, and the bytes never depend on how many processes
did the work.

Speed: the per-row work is kept to table look-ups (joint draw tables in `sitetables`, dates as day
numbers in `days`). `CentreGenerator` is assembled from one layer per concern: `state` (tables),
`treatment`, `tumour`, `extension` and `rows` (the per-patient loop); this module adds chunking.
"""

from __future__ import annotations

from collections.abc import Iterator
from random import Random

from oncofed.synth.draws import derive_seed
from oncofed.synth.rows import RowAssembler

CHUNK_PATIENTS = 25_000


class CentreGenerator(RowAssembler):
    """Draws one centre's patients; `rows()` yields CSV rows in the dictionary's column order."""

    @property
    def n_chunks(self) -> int:
        return -(-self.n_patients // CHUNK_PATIENTS)

    def rows(self) -> Iterator[list[str]]:
        """Every row of the centre, chunk after chunk, in the dictionary's column order."""
        for k in range(self.n_chunks):
            yield from self.chunk_rows(k)

    def chunk_rows(self, k: int) -> Iterator[list[str]]:
        """The rows of patients k*CHUNK_PATIENTS+1 .. (k+1)*CHUNK_PATIENTS, from their own seed."""
        first = k * CHUNK_PATIENTS + 1
        last = min(self.n_patients, first + CHUNK_PATIENTS - 1)
        rng = Random(derive_seed(self.seed, self.centre_index, f"rows/{k}"))
        perm = self.perm
        if self.identity:
            yield from self._rows(first, last, rng)
            return
        for row in self._rows(first, last, rng):
            row.append("")
            yield [row[i] for i in perm]
