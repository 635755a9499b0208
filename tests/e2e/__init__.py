"""End-to-end tier: a real Airflow deployment (scheduler, dag-processor, triggerer, API server)."""
