package convert

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// image is the converted image: a new OCI manifest and config over the
// kept source layers and the new file layers.
type image struct {
	rawManifest []byte
	rawConfig   []byte
	layers      map[v1.Hash]partial.CompressedLayer
}

var _ partial.CompressedImageCore = (*image)(nil)

func (im *image) RawConfigFile() ([]byte, error)      { return im.rawConfig, nil }
func (im *image) RawManifest() ([]byte, error)        { return im.rawManifest, nil }
func (im *image) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

func (im *image) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := im.layers[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("convert: no layer %s in the converted image", h)
}

// assemble builds the new image, or returns src itself when nothing
// changed, so that converting twice gives the same digest.
func assemble(src v1.Image, in *source, out []outLayer) (v1.Image, error) {
	unchanged := in.manifest.MediaType == types.OCIManifestSchema1
	descs := make([]v1.Descriptor, len(out))
	diffIDs := make([]v1.Hash, len(out))
	layers := make(map[v1.Hash]partial.CompressedLayer, len(out))
	for i, l := range out {
		descs[i], diffIDs[i], layers[l.desc.Digest] = l.desc, l.diffID, l.layer
		unchanged = unchanged && l.kept && l.desc.MediaType == in.manifest.Layers[i].MediaType
	}
	if unchanged {
		return src, nil
	}
	cfg, err := rewriteConfig(in.rawConfig, in.diffIDs, diffIDs)
	if err != nil {
		return nil, err
	}
	cfgDigest, cfgSize, err := v1.SHA256(bytes.NewReader(cfg))
	if err != nil {
		return nil, err
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: ociConfigType(in.manifest.Config.MediaType), Size: cfgSize, Digest: cfgDigest},
		Layers:        descs,
		Annotations:   in.manifest.Annotations,
		Subject:       in.manifest.Subject,
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("convert: manifest: %w", err)
	}
	return partial.CompressedToImage(&image{rawManifest: raw, rawConfig: cfg, layers: layers})
}

// rewriteConfig sets rootfs.diff_ids and leaves every other byte's meaning
// alone: the config is edited as raw JSON, so fields go-containerregistry's
// ConfigFile does not know survive.
func rewriteConfig(raw []byte, old, diffIDs []v1.Hash) ([]byte, error) {
	if slices.Equal(old, diffIDs) {
		return raw, nil
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("convert: %w: config: %v", ErrImage, err)
	}
	var rootfs map[string]json.RawMessage
	if err := json.Unmarshal(cfg["rootfs"], &rootfs); err != nil {
		return nil, fmt.Errorf("convert: %w: config rootfs: %v", ErrImage, err)
	}
	ids, err := json.Marshal(diffIDs)
	if err != nil {
		return nil, err
	}
	rootfs["diff_ids"] = ids
	if cfg["rootfs"], err = json.Marshal(rootfs); err != nil {
		return nil, err
	}
	return json.Marshal(cfg)
}

func ociConfigType(mt types.MediaType) types.MediaType {
	if mt == types.DockerConfigJSON || mt == "" {
		return types.OCIConfigJSON
	}
	return mt
}
