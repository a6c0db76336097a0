"""The sweep: one ``text-to-image`` run per (guidance, seed) cell through ``ctx.run_tool``, then a
contact sheet. No Qt and no torch here: the pictures come from the other tool.

The pattern for composing tools:

- report ``ctx.progress(i, n)`` before each call: the called tool's own progress then fills that
  step of the bar;
- ``ctx.run_tool(tool_id, **params)`` returns the other tool's results; the studio records the
  call as a child run of this one, with its own seed and parameters, so each picture can be
  opened, reproduced or sent to another tool on its own;
- a cancel stops the called tool and raises ``Cancelled`` here: catch it, and raise it again with
  what is done (``Cancelled(results=...)``) so the user keeps the partial sheet.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from app.api import Cancelled, ImageResult, Result, RunContext, TableResult

#: The tool every cell is made by.
TEXT_TO_IMAGE = "text-to-image"
#: Colours of the sheet: background, an empty cell (a cancelled sweep), captions.
BACKGROUND, EMPTY, INK = (24, 24, 28), (60, 60, 66), (230, 230, 235)
MARGIN_TOP, MARGIN_LEFT, GAP = 22, 64, 4


def sweep(ctx: RunContext, prompt: str, negative_prompt: str, seeds: Sequence[int], guidance: Sequence[float],
          steps: int, model: str, cell_size: int = 256) -> list[Result]:
    """The tool's run function (``seed-guidance-sweep``)."""
    cells = [(g, s) for g in guidance for s in seeds]
    pictures: dict[tuple[float, int], np.ndarray] = {}
    try:
        for i, (g, seed) in enumerate(cells):
            ctx.progress(i, len(cells), f"guidance {g:g}, seed {seed}")
            made = ctx.run_tool(TEXT_TO_IMAGE, prompt=prompt, negative_prompt=negative_prompt, seed=seed,
                                guidance=g, steps=steps, model=model, record_trajectory=False)
            pictures[(g, seed)] = first_picture(made)
    except Cancelled:
        if not pictures:
            raise
        # keep what is done: the cancelled run is recorded with the partial sheet
        raise Cancelled(results=outputs(ctx, prompt, seeds, guidance, pictures, cell_size)) from None
    ctx.progress(len(cells), len(cells), "contact sheet")
    return outputs(ctx, prompt, seeds, guidance, pictures, cell_size)


def first_picture(results: Sequence[Result]) -> np.ndarray:
    """The picture among a text-to-image run's results (the first image)."""
    for r in results:
        if isinstance(r, ImageResult):
            return r.image
    raise ValueError(f"{TEXT_TO_IMAGE} returned no image (results: {[r.kind for r in results]})")


def outputs(ctx: RunContext, prompt: str, seeds: Sequence[int], guidance: Sequence[float],
            pictures: Mapping[tuple[float, int], np.ndarray], cell_size: int) -> list[Result]:
    """The contact sheet and a table of the cells (mean and spread of each picture)."""
    captions = bool(ctx.setting("seed-sweep", "captions", True))
    sheet = contact_sheet(pictures, guidance, seeds, cell_size, captions=captions)
    done, total = len(pictures), len(guidance) * len(seeds)
    rows = [(float(g), int(s), round(float(pictures[(g, s)].mean()), 3), round(float(pictures[(g, s)].std()), 3))
            for g in guidance for s in seeds if (g, s) in pictures]
    meta = {"prompt": prompt, "seeds": [int(s) for s in seeds], "guidance": [float(g) for g in guidance],
            "cells_done": done, "cells": total}
    label = "contact sheet" if done == total else f"contact sheet ({done} of {total})"
    return [ImageResult(image=sheet, label=label, metadata=meta),
            TableResult(columns=("guidance", "seed", "mean", "std"), rows=rows, label="cells", metadata=meta)]


def contact_sheet(pictures: Mapping[tuple[float, int], np.ndarray], guidance: Sequence[float], seeds: Sequence[int],
                  cell_size: int = 256, *, captions: bool = True) -> np.ndarray:
    """A grid of the pictures, a row per guidance value and a column per seed, each scaled to fit
    ``cell_size`` (aspect kept, centred); a missing picture is a plain grey cell. With
    ``captions`` the seeds are written above the columns and the guidance values left of the rows."""
    from PIL import Image, ImageDraw

    if not guidance or not seeds:
        raise ValueError("a contact sheet needs at least one guidance value and one seed")
    cell_w, cell_h = _cell_shape(pictures, cell_size)
    top, left = (MARGIN_TOP, MARGIN_LEFT) if captions else (0, 0)
    width = left + len(seeds) * (cell_w + GAP) + GAP
    height = top + len(guidance) * (cell_h + GAP) + GAP
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for row, g in enumerate(guidance):
        for col, seed in enumerate(seeds):
            x, y = left + GAP + col * (cell_w + GAP), top + GAP + row * (cell_h + GAP)
            picture = pictures.get((g, seed))
            if picture is None:
                draw.rectangle((x, y, x + cell_w - 1, y + cell_h - 1), fill=EMPTY)
                continue
            img = Image.fromarray(np.ascontiguousarray(picture[..., :3]))
            img.thumbnail((cell_w, cell_h), Image.Resampling.LANCZOS)
            sheet.paste(img, (x + (cell_w - img.width) // 2, y + (cell_h - img.height) // 2))
    if captions:
        for col, seed in enumerate(seeds):
            draw.text((left + GAP + col * (cell_w + GAP) + 2, 4), f"seed {seed}", fill=INK)
        for row, g in enumerate(guidance):
            draw.text((4, top + GAP + row * (cell_h + GAP) + cell_h // 2 - 6), f"cfg {g:g}", fill=INK)
    return np.asarray(sheet)


def _cell_shape(pictures: Mapping[Any, np.ndarray], cell_size: int) -> tuple[int, int]:
    """Width and height of a cell: the first picture's aspect with its longest side ``cell_size``
    (never enlarged); square when there is no picture."""
    for picture in pictures.values():
        h, w = picture.shape[:2]
        scale = min(1.0, cell_size / max(h, w))
        return max(1, round(w * scale)), max(1, round(h * scale))
    return cell_size, cell_size
