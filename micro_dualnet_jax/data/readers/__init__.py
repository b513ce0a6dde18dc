"""Readers: one per released dataset format, each turning files into `Clip`s.

docs/data_formats.md describes each format. Every reader raises `DataFormatError` naming the file (and row,
sample or clip) on malformed input.
"""

from micro_dualnet_jax.data.readers._common import presence_confidence
from micro_dualnet_jax.data.readers.folder import check_folder, read_folder_split
from micro_dualnet_jax.data.readers.imigue import RAW_LAYOUT as IMIGUE_RAW_LAYOUT
from micro_dualnet_jax.data.readers.imigue import (
    IMIGUE_CLASSES, gesture_to_class, processed_splits, raw_splits, read_label_csv,
    read_processed_split, read_raw_split, read_raw_video, read_skeleton_csv)
from micro_dualnet_jax.data.readers.ma52 import (
    MA52_ACTION_TO_BODY, MA52_BODY_GROUPS, MA52_CLASSES, ma52_body_label, read_label_names,
    read_list_file, read_ma52_split)
from micro_dualnet_jax.data.readers.nwucla import (
    NWUCLA_CLASSES, parse_clip_name, read_nwucla, read_nwucla_file)
from micro_dualnet_jax.data.readers.openpose_json import (
    read_openpose_folder, read_openpose_video)
from micro_dualnet_jax.data.readers.pyskl import annotation_to_clip, load_pyskl, read_pyskl

__all__ = [
    'IMIGUE_CLASSES', 'IMIGUE_RAW_LAYOUT', 'presence_confidence', 'MA52_ACTION_TO_BODY', 'MA52_BODY_GROUPS', 'MA52_CLASSES',
    'NWUCLA_CLASSES', 'annotation_to_clip', 'check_folder', 'gesture_to_class', 'load_pyskl',
    'ma52_body_label', 'parse_clip_name', 'processed_splits', 'raw_splits', 'read_folder_split',
    'read_label_csv', 'read_label_names', 'read_list_file', 'read_ma52_split', 'read_nwucla',
    'read_nwucla_file', 'read_openpose_folder', 'read_openpose_video', 'read_processed_split',
    'read_pyskl', 'read_raw_split', 'read_raw_video', 'read_skeleton_csv',
]
