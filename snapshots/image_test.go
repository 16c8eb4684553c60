package snapshots

import (
	"context"
	"errors"
	"testing"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
)

// fakeImage records unpacks; checkErr and unpackErr are what it answers.
type fakeImage struct {
	containerd.Image
	unpacked  bool
	checkErr  error
	unpackErr error
	unpacks   int
}

func (f *fakeImage) Name() string { return "node:20" }
func (f *fakeImage) IsUnpacked(context.Context, string) (bool, error) {
	return f.unpacked, f.checkErr
}
func (f *fakeImage) Unpack(context.Context, string, ...containerd.UnpackOpt) error {
	f.unpacks++
	return f.unpackErr
}

func TestUnpack(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name        string
		img         fakeImage
		wantUnpacks int
		fails       bool
	}{
		{"already unpacked", fakeImage{unpacked: true}, 0, false},
		{"unpacked now", fakeImage{}, 1, false},
		{"unpacked meanwhile", fakeImage{unpackErr: errdefs.ErrAlreadyExists}, 1, false},
		{"unpack fails", fakeImage{unpackErr: errors.New("disk full")}, 1, true},
		{"check fails", fakeImage{checkErr: errors.New("no snapshotter")}, 0, true},
	} {
		img := tc.img
		err := Unpack(ctx, &img, "overlayfs")
		if (err != nil) != tc.fails || img.unpacks != tc.wantUnpacks {
			t.Errorf("%s: err %v, unpacks %d", tc.name, err, img.unpacks)
		}
	}
}
