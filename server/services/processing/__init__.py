"""Uploaded recordings: storage on disk, the job queue, and the pipeline of steps that turns a file into a meeting."""
