"""Data: ``Scan`` records from synthetic cohorts and readers, preprocessing, the prepared cache, splits.

Public API (see docs/architecture.md, "Data API", and docs/data.md)::

    load_dataset(name_or_path, size="quick", seed=0, **options) -> Dataset
    prepare(dataset, depth, cache_dir, flatten=True) -> PreparedDataset
    make_split(patient_ids, seed=0, ratios=(0.6, 0.1, 0.3), dataset="") -> Split
    label_subset(train_patients, fraction_percent, seed) -> list[str]
    to_eval_grid(volume) / resize_map(prob, (H, W))
"""

from bench3d2d.data.cache import PreparedDataset, open_prepared, prepare
from bench3d2d.data.evalgrid import (
    eval_shape,
    eval_size,
    mask_to_eval_grid,
    resize_map,
    resize_nearest,
    to_eval_grid,
)
from bench3d2d.data.records import DataError, Dataset, Scan, ScanRef
from bench3d2d.data.registry import (
    SIZES,
    DatasetInfo,
    UnknownDatasetError,
    dataset_info,
    list_datasets,
    load_dataset,
    register_dataset,
)
from bench3d2d.data.splits import Split, label_subset, make_split

__all__ = [
    "SIZES",
    "DataError",
    "Dataset",
    "DatasetInfo",
    "PreparedDataset",
    "Scan",
    "ScanRef",
    "Split",
    "UnknownDatasetError",
    "dataset_info",
    "eval_shape",
    "eval_size",
    "label_subset",
    "list_datasets",
    "load_dataset",
    "make_split",
    "mask_to_eval_grid",
    "open_prepared",
    "prepare",
    "register_dataset",
    "resize_map",
    "resize_nearest",
    "to_eval_grid",
]
