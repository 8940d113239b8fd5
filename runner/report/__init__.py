"""The run's report (config section ``report``): figures and tables drawn from plain data, the
artifacts logged after training, and the trained network as an MLflow pyfunc model."""
