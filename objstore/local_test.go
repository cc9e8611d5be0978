package objstore_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// The helper process: the test binary re-run with these variables set acts
// as a second writer, so cross-process behaviour is tested for real.
const (
	envHelper = "SLUICE_SINK_TEST_HELPER"
	envDir    = "SLUICE_SINK_TEST_DIR"
	envID     = "SLUICE_SINK_TEST_ID"
)

func TestMain(m *testing.M) {
	switch os.Getenv(envHelper) {
	case "":
		os.Exit(m.Run())
	case "put-if-absent":
		os.Exit(helperPutIfAbsent())
	case "slow-put":
		os.Exit(helperSlowPut())
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", os.Getenv(envHelper))
		os.Exit(2)
	}
}

// helperPutIfAbsent tries to create keys k00..k29 and prints the ones it won.
func helperPutIfAbsent() int {
	b, err := objstore.NewLocal(os.Getenv(envDir))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for i := range 30 {
		key := fmt.Sprintf("race/k%02d", i)
		err := b.PutIfAbsent(context.Background(), key, []byte(os.Getenv(envID)))
		switch {
		case err == nil:
			fmt.Println(key)
		case !objstore.IsExists(err):
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

// helperSlowPut starts a Put whose reader hands over 1 MiB and then blocks,
// says so on stdout, and waits to be killed.
func helperSlowPut() int {
	b, err := objstore.NewLocal(os.Getenv(envDir))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	block := make(chan struct{})
	r := io.MultiReader(bytes.NewReader(make([]byte, 1<<20)), readerFunc(func([]byte) (int, error) {
		fmt.Println("writing")
		<-block
		return 0, io.EOF
	}))
	_ = b.Put(context.Background(), "crash/obj", r, 2<<20)
	return 0
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func helper(t *testing.T, kind, dir, id string) *exec.Cmd {
	t.Helper()
	return testkit.TestBinaryCmd(t.Context(), envHelper+"="+kind, envDir+"="+dir, envID+"="+id)
}

func TestLocalPutIfAbsentAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	const procs = 4
	outs := make([]*bytes.Buffer, procs)
	cmds := make([]*exec.Cmd, procs)
	for i := range procs {
		cmds[i] = helper(t, "put-if-absent", dir, fmt.Sprint(i))
		outs[i] = &bytes.Buffer{}
		cmds[i].Stdout = outs[i]
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	wins := map[string][]int{}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v", i, err)
		}
		for _, k := range strings.Fields(outs[i].String()) {
			wins[k] = append(wins[k], i)
		}
	}
	b, _ := objstore.NewLocal(dir)
	for i := range 30 {
		key := fmt.Sprintf("race/k%02d", i)
		if len(wins[key]) != 1 {
			t.Errorf("%s won by processes %v, want exactly one", key, wins[key])
			continue
		}
		rc, err := b.Get(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if string(got) != fmt.Sprint(wins[key][0]) {
			t.Errorf("%s holds %q, but process %d won", key, got, wins[key][0])
		}
	}
}

func TestLocalKilledPutLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	b, err := objstore.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Put(t.Context(), "crash/old", bytes.NewReader([]byte("old")), 3); err != nil {
		t.Fatal(err)
	}
	cmd := helper(t, "slow-put", dir, "")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && line != "writing\n" {
			err = fmt.Errorf("helper said %q", line)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("helper did not start writing within 30s")
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no cleanup runs
		t.Fatal(err)
	}
	_ = cmd.Wait()

	// The half-written temporary is on disk but is no object.
	tmps, _ := filepath.Glob(filepath.Join(dir, "crash", ".sluice-tmp-*"))
	if len(tmps) != 1 {
		t.Errorf("temporaries on disk: %q, want the killed writer's one", tmps)
	}
	var keys []string
	if err := b.Iter(t.Context(), "", func(a objstore.ObjectAttrs) error { keys = append(keys, a.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"crash/old"}) {
		t.Errorf("objects after kill = %q, want only crash/old", keys)
	}
	if _, err := b.Attributes(t.Context(), "crash/obj"); !objstore.IsNotExist(err) {
		t.Errorf("killed put: attributes err = %v, want ErrNotExist", err)
	}
}

func TestLocalDeletePrunesEmptyDirectories(t *testing.T) {
	b := objstoretest.NewLocal(t)
	ctx := t.Context()
	for _, k := range []string{"t/dt=2024-05-01/hour=13/a.parquet", "t/dt=2024-05-01/hour=14/b.parquet"} {
		if err := b.Put(ctx, k, bytes.NewReader(nil), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Delete(ctx, "t/dt=2024-05-01/hour=13/a.parquet"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(b.Dir(), "t/dt=2024-05-01/hour=13")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("emptied directory still there: %v", err)
	}
	if err := b.Delete(ctx, "t/dt=2024-05-01/hour=14/b.parquet"); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(b.Dir())
	if err != nil || len(entries) != 0 {
		t.Errorf("root holds %v (%v), want it empty but present", entries, err)
	}
}

func TestLocalRefusesObjectAsParent(t *testing.T) {
	b := objstoretest.NewLocal(t)
	ctx := t.Context()
	if err := b.Put(ctx, "a", bytes.NewReader([]byte("x")), 1); err != nil {
		t.Fatal(err)
	}
	err := b.Put(ctx, "a/b", bytes.NewReader([]byte("y")), 1)
	if err == nil {
		t.Fatal("put under an object: want an error")
	}
	if _, err := b.Attributes(ctx, "a"); err != nil {
		t.Errorf("the object in the way was harmed: %v", err)
	}
}

func TestNewLocalErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, dir := range map[string]string{"empty": "", "a file": file} {
		if _, err := objstore.NewLocal(dir); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}
