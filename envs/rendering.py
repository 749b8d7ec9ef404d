"""Rendering shared by the memory tasks: ``"ansi"`` text, or an ``"rgb_array"`` picture of a small grid
of coloured cells that each task draws from its state."""

from __future__ import annotations

import numpy as np

RENDER_MODES = ["ansi", "rgb_array"]

# Colour indices of a task's grid.
EMPTY, FLOOR, AGENT, GOAL, MARK = 0, 1, 2, 3, 4
SYMBOL = 5  # symbol k (or bit k) is drawn with colour SYMBOL + k
PALETTE = np.array(
    [
        (30, 30, 30),  # empty
        (200, 200, 200),  # floor
        (220, 50, 47),  # agent
        (60, 170, 60),  # goal
        (250, 200, 40),  # mark (the current step, the queried bit)
        (38, 139, 210),  # symbol 0
        (211, 54, 130),  # symbol 1
        (133, 153, 0),  # symbol 2
        (108, 113, 196),  # symbol 3
        (203, 75, 22),  # symbol 4
        (42, 161, 152),  # symbol 5
        (181, 137, 0),  # symbol 6
        (147, 161, 161),  # symbol 7
    ],
    dtype=np.uint8,
)


class GridRender:
    """``render()`` for a task that draws its state as a grid (``_grid()``) and as text (``_text()``)."""

    render_mode: str | None

    def _grid(self) -> np.ndarray:
        raise NotImplementedError

    def _text(self) -> str:
        raise NotImplementedError

    def render(self) -> str | np.ndarray | None:
        if self.render_mode == "rgb_array":
            return grid_to_rgb(self._grid())
        return self._text() if self.render_mode == "ansi" else None


def check_render_mode(render_mode: str | None) -> str | None:
    if render_mode is not None and render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode={render_mode!r}: expected None or one of {', '.join(map(repr, RENDER_MODES))}")
    return render_mode


def grid_to_rgb(grid: np.ndarray, cell: int = 16) -> np.ndarray:
    """``grid`` (rows, cols) of colour indices -> an image ``(rows * cell, cols * cell, 3)`` uint8, with a
    one-pixel dark border around each cell."""
    colours = PALETTE[np.clip(grid, 0, len(PALETTE) - 1) if grid.size else grid]
    image = np.repeat(np.repeat(colours, cell, axis=0), cell, axis=1)
    image[::cell, :] = PALETTE[EMPTY]
    image[:, ::cell] = PALETTE[EMPTY]
    return image
