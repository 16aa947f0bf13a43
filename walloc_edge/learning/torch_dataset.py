"""A ``torch.utils.data.Dataset`` over a latents (or pixels) dataset, for your own loops."""
import torch
from torch.utils.data import Dataset

from .datasets import arrays, load
from .training import as_input

__all__ = ["WallocDataset"]


class WallocDataset(Dataset):
    """``WallocDataset(folder)[i]`` → (float tensor (C, H, W), label): latents as the sensor
    sent them (int8 values as floats), or pictures channels first (0–255). The rows are read
    into memory once (5,000 images of 16× latents are 47 MB). ``info`` says what they are
    (model, model_id, classes)."""

    def __init__(self, folder, transform=None):
        self.info, table = load(folder)
        data, labels = arrays(table, self.info.kind)
        self.inputs = as_input(data, self.info.kind)
        self.labels = torch.from_numpy(labels)
        self.transform = transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = self.inputs[i]
        return (self.transform(x) if self.transform else x), int(self.labels[i])
