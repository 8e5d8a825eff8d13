"""The real control-plane test tier: etcd, kube-apiserver and kube-controller-manager
built from Go modules (`make cluster-bin`) and started on loopback."""
