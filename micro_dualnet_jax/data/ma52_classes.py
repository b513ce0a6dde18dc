"""MA-52's 52 action classes and their 7 body-level groups: the one definition of the
action -> body ("fine2coarse") table, used by the reader, the metrics and the submission file.

Actions 0-4 are whole-body actions, 5-10 head, 11-23 upper limb, 24-31 lower limb, 32-37
body-hand, 38-47 head-hand and 48-51 leg-hand (docs/data_formats.md, MA-52); the official
challenge code maps an action to its group with the same ranges.
"""

from __future__ import annotations

import numpy as np

MA52_CLASSES: tuple[str, ...] = (
    'shaking body', 'sitting straightly', 'shrugging', 'turning around', 'rising up',
    'bowing head', 'head up', 'tilting head', 'turning head', 'nodding', 'shaking head',
    'scratching arms', 'playing objects', 'putting hands together', 'rubbing hands',
    'pointing oneself', 'clenching fist', 'stretching arms', 'retracting arms', 'waving',
    'spreading hands', 'hands touching fingers', 'other finger movements',
    'illustrative gestures', 'shaking legs', 'curling legs', 'spread legs', 'closing legs',
    'crossing legs', 'stretching feet', 'retracting feet', 'tiptoe',
    'scratching or touching neck', 'scratching or touching chest',
    'scratching or touching back', 'scratching or touching shoulder', 'arms akimbo',
    'crossing arms', 'playing or tidying hair', 'scratching or touching hindbrain',
    'scratching or touching forehead', 'scratching or touching face', 'rubbing eyes',
    'touching nose', 'touching ears', 'covering face', 'covering mouth', 'pushing glasses',
    'patting legs', 'touching legs', 'scratching legs', 'scratching feet')
NUM_CLASSES = len(MA52_CLASSES)
MA52_BODY_GROUPS: tuple[str, ...] = (
    'body', 'head', 'upper limb', 'lower limb', 'body-hand', 'head-hand', 'leg-hand')
NUM_BODY_CLASSES = len(MA52_BODY_GROUPS)
# First action index of each body group; group g spans [start[g], start[g + 1]).
_BODY_GROUP_STARTS = (0, 5, 11, 24, 32, 38, 48)
# (52,) int64: action index -> body group index (fine2coarse).
MA52_ACTION_TO_BODY: np.ndarray = np.searchsorted(
    np.asarray(_BODY_GROUP_STARTS), np.arange(NUM_CLASSES), side='right') - 1


def ma52_body_label(action: int) -> int:
  """Body-level group (0..6, names in MA52_BODY_GROUPS) of an action index (0..51)."""
  if not 0 <= action < NUM_CLASSES:
    raise ValueError(f'MA-52 action label {action} outside 0..{NUM_CLASSES - 1}')
  return int(MA52_ACTION_TO_BODY[action])
