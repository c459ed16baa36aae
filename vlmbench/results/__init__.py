"""What a run leaves in its results folder: CSVs, records, the folder lock, claims, summary and reports."""
