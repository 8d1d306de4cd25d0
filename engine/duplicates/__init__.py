"""The duplicate finder (`lookalike dupes`): groups of near-duplicate images in a whole catalog.

How a scan works (never all pairs: memory and time grow with the catalog, not its square)

1. **Candidates** come from the k-nearest-neighbour graph of the HNSW index: every image's stored
   embedding is queried in batches (hnswlib answers many queries at once on all cores) for its
   ``k`` nearest neighbours, and a pair is kept when its embedding cosine is at least a loose
   ``floor``. When even the k-th neighbour of an image is nearly identical (``expand_above``) the
   image is queried again with a larger k, so a photo with hundreds of copies keeps them all.
   Images with the same content hash (byte-identical files) are always candidates.
2. **Verification**: the evidence of every candidate pair (embedding cosine, ORB/RANSAC inliers,
   colour, aligned pixel agreement: :func:`pair_evidence`, from stored data only, on a thread per
   core) is scored by the calibrated score search uses, as a search with the pair's newer image
   would score it, with search's competition between candidates (:func:`competing_scores`: a
   copy must agree with its original better than with its other verified neighbours, which
   tells an original from a recoloured variant of the same photo), and kept when it reaches the
   threshold (the "copy" threshold by default). An image that no pair confirms as a copy is
   decoded again and matched with more keypoints (copies under text), and, when it is also far
   from every other image, embedded turned by 90/180/270 degrees for more candidates (turned
   copies), as search does with such a query (``dense``, ``model``).
   Pairs the user marked "not a duplicate" are dropped before verification; pairs marked
   "confirmed duplicate" are always kept. Pairs between *declared variants* (two different
   products of one item group in the product feed, e.g. the blue and the green colour of a
   jacket sharing a recoloured photo) compete in the scoring like any pair but are not reported
   unless ``include_variants`` (:func:`variant_families`).
3. **Grouping** (the policy; see docs/duplicates.md): groups are *stars*, not connected
   components. The representative of a group is chosen first and every member is a verified copy
   of the representative itself, so a chain A~B~C never pulls A and C together through B unless
   both are copies of the same representative. Representatives are picked greedily in this order:
   a user-chosen reference first, then the image with the most verified copies not yet in a group,
   then the largest (pixels), then the oldest (first added). Each image belongs to at most one
   group; each member carries its score against the representative. Unless variants are
   included, two declared variants never share a group (not even through a common
   representative), just like a pair the user marked "not a duplicate".

Decisions ("not a duplicate", "confirmed duplicate") and user-chosen references are stored in the
catalog database, keyed by the images' content hashes, so they survive re-imports, moves and
renames and are never confused by a reused image id. The tables are created on first use by this
module (``CREATE TABLE IF NOT EXISTS``); the core schema does not depend on them.

The stages, one module each: :mod:`.candidates` (kNN graph, identical files, turned copies),
:mod:`.verifying` (pair evidence on threads, by engine.match_policy), :mod:`.grouping` (the
star policy), :mod:`.variants` (declared variants from product data), :mod:`.scan` (the whole
scan), :mod:`.results` and :mod:`.export` (CSV). Decisions are engine.decision_store's.
"""

from ..decision_store import CONFIRMED, DECISIONS, NOT_DUPLICATE
from ..match_policy import EVIDENCE, declared_variants
from .candidates import (CANDIDATE_FLOOR, DEFAULT_K, EXPAND_ABOVE, SEARCH_EF, hash_pairs, knn_candidates,
                         pair_keys, turned_pairs)
from .export import CSV_FIELDS, csv_rows, export_csv, write_groups_csv
from .grouping import group_pairs
from .results import CancelToken, DuplicateGroup, Member, Progress, ScanCancelled, ScanResult
from .scan import (SCANNED_VERSION_KEY, attach_records, image_areas, rescore_group, scan,
                   scan_model)
from .variants import declared_variant_mask, listed_images, variant_attributes, variant_families
from .verifying import (VERIFY_THREADS_MAX, embedding_verifier, pair_evidence, verify_pairs,
                        verify_parallel, verify_workers)

__all__ = [
    "CANDIDATE_FLOOR", "CONFIRMED", "CSV_FIELDS", "DECISIONS", "DEFAULT_K", "EVIDENCE", "EXPAND_ABOVE",
    "NOT_DUPLICATE", "SCANNED_VERSION_KEY", "SEARCH_EF", "VERIFY_THREADS_MAX", "CancelToken",
    "DuplicateGroup", "Member", "Progress", "ScanCancelled", "ScanResult", "attach_records",
    "csv_rows", "declared_variant_mask", "declared_variants", "embedding_verifier", "export_csv",
    "group_pairs", "hash_pairs", "image_areas", "knn_candidates", "listed_images", "pair_evidence",
    "pair_keys", "rescore_group", "scan", "scan_model", "turned_pairs", "variant_attributes",
    "variant_families", "verify_pairs", "verify_parallel", "verify_workers", "write_groups_csv",
]
