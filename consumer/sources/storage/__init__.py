"""Files and stored objects: local paths and S3, GCS and Azure Blob buckets, the selection of what to
read, the bounded read-ahead, and the file source of ``replay``."""
