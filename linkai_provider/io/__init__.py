"""Storage access: URLs plus Airflow connection ids in, fsspec filesystems underneath."""
