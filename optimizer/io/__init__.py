"""The readers and writers of files: input tables (load, validate, stream), the run folder, the history."""
