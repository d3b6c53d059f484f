"""Renderers: turn a result into text (rich), JSON (schema ids) or Markdown. They compute nothing."""
