"""Hash lists: the file format, its fast column reader, the indexes, the loaded-list model,
the registry that reloads lists safely, and the importers of shared formats."""
