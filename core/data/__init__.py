"""Data sets: one HDF5 file per data set under artifacts/data/, built by the simulator or imported.

    from core import data
    data.build(profile="quick")          # core/data/building.py: simulate and write a data set
    data.import_hdf5("their_grid.h5")    # core/data/importing.py: validate and copy the group's grid
    ds = data.Dataset("sim-quick")       # core/data/dataset.py: open it; ds.view(...) feeds every model
"""
from core.data.building import build, latin_hypercube, sample_labels
from core.data.dataset import (
                               INPUTS,
                               LABEL_BOX,
                               LABEL_TITLES,
                               LABELS,
                               NOISE_BLOCK,
                               SPLITS,
                               DataError,
                               Dataset,
                               View,
                               dataset_path,
                               list_datasets,
                               noise_block,
                               summary_json,
)
from core.data.importing import import_hdf5, validate_source

__all__ = ["INPUTS", "LABEL_BOX", "LABEL_TITLES", "LABELS", "NOISE_BLOCK", "SPLITS", "DataError", "Dataset", "View",
           "build", "dataset_path", "import_hdf5", "latin_hypercube", "list_datasets", "noise_block", "sample_labels",
           "summary_json", "validate_source"]
