"""The mapping table and its checks: framework-free (numpy only), above genet_arch only."""
