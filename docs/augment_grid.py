"""Draw docs/augment.png: each of the reference RandAugment's 16 ops on skimage's chelsea (224 px) at M = 5, 10, 15.

Run from the repository root: `PYTHONPATH=src python docs/augment_grid.py`. Signed ops use their positive
argument (RandAugment flips the sign half the time); Cutout's box position is random (torch seed 0).
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw
from skimage import data

from effnet.data.autoaugment import RANDAUGMENT_OPS, apply_op, level_to_arg

# Ops run at 224 px, the size the reference's pixel constants (translate 100, cutout 40) were set for.
SIZE, TILE, LABEL, LEVELS, OPS_PER_ROW = 224, 108, 14, (5, 10, 15), 2
OUTPUT = Path(__file__).with_name("augment.png")


def main(path: Path = OUTPUT) -> None:
    """Render the grid (ops in the reference's order, two per row, three magnitudes each) and save it."""
    torch.manual_seed(0)
    photo = Image.fromarray(data.chelsea())
    side = min(photo.size)
    photo = photo.crop(((photo.width - side) // 2, 0, (photo.width + side) // 2, side)).resize((SIZE, SIZE))
    columns = OPS_PER_ROW * len(LEVELS)
    rows = -(-len(RANDAUGMENT_OPS) // OPS_PER_ROW)
    grid = Image.new("RGB", (columns * TILE, rows * (TILE + LABEL)), "white")
    draw = ImageDraw.Draw(grid)
    for index, name in enumerate(RANDAUGMENT_OPS):
        for offset, level in enumerate(LEVELS):
            arg = level_to_arg(name, level)
            x = (index % OPS_PER_ROW * len(LEVELS) + offset) * TILE
            y = index // OPS_PER_ROW * (TILE + LABEL)
            tile = apply_op(photo, name, arg).resize((TILE, TILE), Image.Resampling.BILINEAR)
            grid.paste(tile, (x, y + LABEL))
            shown = "" if arg is None else f" {arg:.3g}" if isinstance(arg, float) else f" {arg}"
            draw.text((x + 2, y + 1), f"{name} M{level}{shown}", fill="black")
    # A 256-colour palette keeps the PNG small (well under 300 KB) at no visible cost at this size.
    grid.quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
