module github.com/libvirt-dac-hook/libvirt-dac-hook

go 1.26.8

require (
	github.com/google/go-cmp v0.7.0
	github.com/google/renameio/v2 v2.0.2
	github.com/sirupsen/logrus v1.10.2
	golang.org/x/sys v0.50.0
	libvirt.org/go/libvirtxml v1.12008.0
)

require go.etcd.io/bbolt v1.4.3
