"""From a run's datasets to device batches: open the splits, load or pack them, augment on device.

  datasets.py     the run config's train and eval splits, and a loader for each
  loader.py       the host loader: shuffle, shard by process, pad to fixed shapes, prefetch
  device_data.py  the training split packed on the devices, batches drawn inside the step
  augment.py      frame sampling, normalisation, augmentation and input streams, on the device
"""
