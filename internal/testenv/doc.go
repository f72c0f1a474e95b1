// Package testenv is test support shared by the packages' tests: where the
// data that lives outside the repository is found. It has no effect on the
// hook itself and is imported only from _test.go files.
package testenv
