"""Stand-in for the two torchvision transforms walloc imports (PILToTensor, ToPILImage)."""
import numpy as np, torch
from PIL import Image
class PILToTensor:
    def __call__(self, img):
        a = np.array(img)
        if a.ndim == 2: a = a[:, :, None]
        return torch.from_numpy(a.copy()).permute(2, 0, 1)
class ToPILImage:
    def __call__(self, t):
        a = t.detach().cpu().numpy()
        if a.dtype != np.uint8: a = (a * 255).clip(0, 255).astype(np.uint8)
        a = a.transpose(1, 2, 0)
        return Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)
