"""The data cache: per-study statistics, thumbnails and memory-mapped arrays, written atomically.

Layout under the cache root (``MOSMED_CACHE``, default ``<repo>/data_cache``)::

    <dataset_key>/                       dataset_key = "<basename>-<sha1(resolved root)[:10]>"
      stats/study_0001-<srckey>.json     summary row, per-slice areas, lung HU histogram (never evicted)
      thumbs/study_0001-<srckey>.png     small preview (never evicted)
      arrays/study_0001-<srckey>/        volume.npy, mask.npy (if any), lung.npy, meta.json, last_used
                                         (evictable: least recently used first, under a disk budget)
      summary-<regkey>.json / .csv       every registry row, rebuilt whenever any entry changed
      .tmp-<pid>-<token>-...             in-progress writes, in the directory of their target; never read

One module a concern:

- :mod:`mosmed.cache.keys`: the cache version, the dataset key, a study's source key and entry names;
- :mod:`mosmed.cache.store`: :class:`~mosmed.cache.store.StudyCache`, reading and writing one study's entries
  (and the in-memory fallback when the cache directory cannot be written);
- :mod:`mosmed.cache.arrays`: the memory-mapped arrays (threaded writer, validated loading);
- :mod:`mosmed.cache.eviction`: the disk budget, least recently used first;
- :mod:`mosmed.cache.build`: building every entry of a registry, in parallel on any executor;
- :mod:`mosmed.cache.summary`: the dataset summary (JSON/CSV) and the cache status.

Why it is safe
--------------
* ``srckey`` hashes the cache version and the identity (path, size, mtime_ns) of the study and mask files, so a
  replaced source gets a new name: a stale entry is never found, and is removed when its successor is written.
* Every file is written through :mod:`mosmed.atomic` (temporary name in the target directory, then a rename); a
  directory is built as ``.tmp-*`` and renamed (when the target already exists another process won: ours is
  discarded). A killed builder therefore leaves only ``.tmp-*`` debris, swept when its process is gone.
* Readers validate what they read (version, key, shapes, dtypes, byte sizes); anything else reads as missing.
* A cache directory that cannot be written makes ``StudyCache.writable`` False: everything is then computed in
  memory.
"""

from mosmed.cache.keys import CACHE_VERSION, dataset_key
from mosmed.cache.store import BuildResult, StudyArrays, StudyCache, StudyEntry

__all__ = ["CACHE_VERSION", "dataset_key", "StudyCache", "StudyArrays", "StudyEntry", "BuildResult"]
