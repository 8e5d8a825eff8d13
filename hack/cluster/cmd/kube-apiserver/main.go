// Command kube-apiserver wraps k8s.io/kubernetes/cmd/kube-apiserver/app for
// Ballast's test control plane.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
