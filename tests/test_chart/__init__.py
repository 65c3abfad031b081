"""Tests of the Helm chart, the container image and the Kubernetes examples."""
