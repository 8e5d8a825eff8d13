// Command kube-controller-manager wraps
// k8s.io/kubernetes/cmd/kube-controller-manager/app for Ballast's test control
// plane.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
