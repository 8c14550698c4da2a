"""Make the course visible on real models.

- :mod:`vision_tasks.inspect.layer_table`: the course's parameter table (input, filter and
  output dims, activation size, weights, biases) for any model, from one traced forward pass.
- :mod:`vision_tasks.inspect.summary`: ``vision-tasks summary`` (a config or a checkpoint
  in, the printed table out).
- :mod:`vision_tasks.inspect.filters`: ``vision-tasks filters`` (the first conv layer's
  learned filters and the activation maps they produce, as PNG).
"""
