package agent

import "syscall"

// diskUsed is the used fraction of the file system holding path, as df
// counts it: blocks in use over blocks in use plus blocks free to users.
func diskUsed(path string) (float64, bool) {
	if path == "" {
		return 0, false
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, false
	}
	used := st.Blocks - st.Bfree
	if used+st.Bavail == 0 {
		return 0, false
	}
	return float64(used) / float64(used+st.Bavail), true
}
