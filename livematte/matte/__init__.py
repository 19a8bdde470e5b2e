"""From the model's coarse output to the matte a frame is composited with: smoothing over time,
motion between model calls, refinement at full size, and the finishing (subject, edges, colours, despill)."""
