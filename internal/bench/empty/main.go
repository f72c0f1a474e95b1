// Command empty does nothing: built like the floor (static, stripped), its
// run time is the Go runtime's start and exit, which run.sh subtracts from
// the floor so the floor is the system calls alone.
package main

func main() {}
