-- MLflow and Prefect each keep their schema version in a table of their own database: sharing
-- aemon's database, whichever migrated second failed on the other's alembic_version.
CREATE DATABASE mlflow;
CREATE DATABASE prefect;
